//! Windows backend: not written yet (see the Windows issue).
compile_error!("the Windows backend of mmapfile is not written yet");
