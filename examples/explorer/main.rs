//! A live explorer of the lesson in the browser: pick p and the seed, step the training of the
//! lesson's model one step at a time or run it, and watch the dropout mask, the tape with its saved
//! bytes, the backward trace, the graph with every edge labelled by its gradient, and the loss and
//! accuracy curves with dropout on and off — all computed live by the engine.
//!
//! Run: `cargo run --release --example explorer` (options: `--port N`, 0 for any free port; default
//! 8787). The first line printed is `explorer: http://127.0.0.1:PORT/`; open it in a browser. The
//! server listens on 127.0.0.1 only, and the page embeds all its code (it works offline).

#[path = "api.rs"]
mod api;

use std::io::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tiny_http::{Header, Response, Server};

const DEFAULT_PORT: u16 = 8787;

fn parse_port() -> Result<u16, String> {
    let mut args = std::env::args().skip(1);
    let mut port = DEFAULT_PORT;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--port" => {
                let value = args.next().ok_or("--port needs a number")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port {value:?} is not a port number (0..=65535)"))?;
            }
            "--help" | "-h" => {
                return Err("usage: explorer [--port N]   (0 = any free port)".into());
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: explorer [--port N]"
                ));
            }
        }
    }
    Ok(port)
}

fn main() {
    let port = match parse_port() {
        Ok(port) => port,
        Err(message) => {
            eprintln!("{message}");
            std::process::exit(2);
        }
    };
    let server = match Server::http(("127.0.0.1", port)) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("explorer: cannot listen on 127.0.0.1:{port}: {e}");
            std::process::exit(1);
        }
    };
    let port = server
        .server_addr()
        .to_ip()
        .map_or(port, |address| address.port());
    println!("explorer: http://127.0.0.1:{port}/");
    let _ = std::io::stdout().flush();

    let mut explorer = api::Explorer::new();
    for request in server.incoming_requests() {
        let method = request.method().as_str().to_string();
        let url = request.url().to_string();
        // The handlers return errors rather than panic; should one panic anyway, answer 500 and
        // start from a fresh state instead of taking the server down.
        let answer = match catch_unwind(AssertUnwindSafe(|| explorer.handle(&method, &url))) {
            Ok(answer) => answer,
            Err(_) => {
                explorer = api::Explorer::new();
                api::Response {
                    status: 500,
                    content_type: "application/json",
                    body: "{\"error\":\"internal error; the session was reset\"}".into(),
                }
            }
        };
        let mut response = Response::from_string(answer.body).with_status_code(answer.status);
        if let Ok(header) = Header::from_bytes("Content-Type", answer.content_type) {
            response = response.with_header(header);
        }
        if let Ok(header) = Header::from_bytes("Cache-Control", "no-store") {
            response = response.with_header(header);
        }
        if let Err(e) = request.respond(response) {
            eprintln!("explorer: could not answer {method} {url}: {e}");
        }
    }
}
