//! roomcast packager.
