//! Compatibility tests against the real implementations.
