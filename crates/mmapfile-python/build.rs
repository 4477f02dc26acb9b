//! Exposes PyO3's configuration flags, such as `Py_GIL_DISABLED` for the
//! free-threaded interpreter, which `src/pylock.rs` depends on.

fn main() {
    pyo3_build_config::use_pyo3_cfgs();
}
