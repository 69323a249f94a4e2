//! The shop's domain types, shared by the functions: no DynamoDB, no Twilio here.

pub mod cart;
pub mod consent;
pub mod locale;
pub mod order;
pub mod phone;
pub mod review;
