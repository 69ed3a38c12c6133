//! Reference model (filled in below).
