//! Byte-stream transports.
