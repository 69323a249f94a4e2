//! Domain types shared by the functions.

pub mod phone;
