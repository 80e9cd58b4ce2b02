//! Low-level kernels. `gemm` is the only module of the crate that uses `unsafe`.

pub(crate) mod gemm;
pub(crate) mod pool;
pub(crate) mod sum;
pub(crate) mod vecmath;
