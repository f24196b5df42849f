//! Ordered queue.
