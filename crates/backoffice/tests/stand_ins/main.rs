//! The clients against stand-ins of the services they call: scripted DynamoDB faults and answers
//! (aws-smithy-mocks and a black-hole server), a scripted Twilio (wiremock) for faults,
//! and Prism serving Twilio's own OpenAPI description for the contract.

mod claim_faults;
mod sweeper_faults;
mod twilio_contract;
mod twilio_faults;
mod twilio_lookup;
