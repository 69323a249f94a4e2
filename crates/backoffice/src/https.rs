//! One TLS stack for every HTTPS call a function makes: rustls with the `ring` crypto
//! provider, for the AWS SDK and for reqwest (Twilio) alike. The SDK's default client would
//! bring a second provider (aws-lc-rs, about 1 MiB of the binary) for the same job.

use std::sync::Once;

use aws_sdk_dynamodb::config::SharedHttpClient;
use aws_smithy_http_client::Builder;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// The HTTP client behind every AWS SDK client (built once per config loader).
pub fn sdk_http_client() -> SharedHttpClient {
    Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// Makes `ring` the process's rustls provider, which reqwest picks up when it builds a
/// client. Idempotent; call it before `reqwest::Client::builder().build()`.
pub fn install_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error only means another provider was installed first: the process then
        // uses that one, which is still a valid TLS stack.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_process_provider_is_ring_after_install() {
        install_crypto_provider();
        install_crypto_provider();
        let provider = rustls::crypto::CryptoProvider::get_default().expect("a provider is installed");
        let ring = rustls::crypto::ring::default_provider();
        let suites = |p: &rustls::crypto::CryptoProvider| p.cipher_suites.iter().map(|s| s.suite()).collect::<Vec<_>>();
        assert_eq!(suites(provider), suites(&ring));
    }
}
