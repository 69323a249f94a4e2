//! A DynamoDB to run against, chosen by the environment, with the template's tables.
//!
//! - nothing set: an embedded dynoxide server (see [`EmbeddedDynamo`]);
//! - `AWS_ENDPOINT_URL_DYNAMODB`: that endpoint (the moto server, a dynoxide server);
//! - `DYNAMODB_TARGET=aws`: real AWS with the usual credential chain and region.
//!
//! Each stack creates its own tables with a unique suffix, so test runs never share
//! state and the same suite runs unchanged against every target.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};

use aws_config::Region;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use backoffice::aws::SdkSettings;

use crate::embedded::EmbeddedDynamo;
use crate::template::{TableDefinition, TemplateError, default_template_path, table_definitions};

/// Table names of one stack, in the environment variables the functions read.
#[derive(Debug, Clone)]
pub struct TableNames {
    pub carts: String,
    pub orders: String,
    pub reviews: String,
    pub messages: String,
    pub consent: String,
    pub stats: String,
}

impl TableNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self {
            carts: format!("{prefix}-carts"),
            orders: format!("{prefix}-orders"),
            reviews: format!("{prefix}-reviews"),
            messages: format!("{prefix}-messages"),
            consent: format!("{prefix}-consent"),
            stats: format!("{prefix}-stats"),
        }
    }

    /// The table name for a template logical id.
    pub fn for_logical_id(&self, logical_id: &str) -> Option<&str> {
        match logical_id {
            "CartsTable" => Some(&self.carts),
            "OrdersTable" => Some(&self.orders),
            "ReviewsTable" => Some(&self.reviews),
            "MessagesTable" => Some(&self.messages),
            "ConsentTable" => Some(&self.consent),
            "StatsTable" => Some(&self.stats),
            _ => None,
        }
    }

    /// `CARTS_TABLE=...` and friends, for a function's environment.
    pub fn env_vars(&self) -> [(&'static str, &str); 6] {
        [
            ("CARTS_TABLE", &self.carts),
            ("ORDERS_TABLE", &self.orders),
            ("REVIEWS_TABLE", &self.reviews),
            ("MESSAGES_TABLE", &self.messages),
            ("CONSENT_TABLE", &self.consent),
            ("STATS_TABLE", &self.stats),
        ]
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Embedded,
    Endpoint,
    Aws,
}

pub struct Stack {
    pub client: Client,
    pub tables: TableNames,
    pub kind: TargetKind,
    /// The endpoint the functions should use (None on real AWS).
    pub endpoint: Option<String>,
    pub embedded: Option<EmbeddedDynamo>,
}

#[derive(Debug, thiserror::Error)]
pub enum StackError {
    #[error("starting the embedded emulator: {0}")]
    Emulator(#[from] std::io::Error),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("template.yaml has no table {0}")]
    MissingTable(&'static str),
}

/// A client for `endpoint` (or real AWS), with the functions' own timeouts and retries.
pub async fn client_for(endpoint: Option<&str>) -> Client {
    let settings = SdkSettings::default();
    let mut loader = backoffice::aws::config_loader(&settings);
    if let Some(endpoint) = endpoint {
        // Emulators accept any credentials; real ones in the environment are not needed.
        loader = loader
            .endpoint_url(endpoint)
            .credentials_provider(Credentials::for_tests())
            .region(Region::new(
                std::env::var("AWS_REGION").unwrap_or_else(|_| "eu-west-3".into()),
            ));
    }
    let sdk_config = loader.load().await;
    Client::new(&sdk_config)
}

static STACKS_CREATED: AtomicU32 = AtomicU32::new(0);

fn unique_prefix(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let sequence = STACKS_CREATED.fetch_add(1, Ordering::Relaxed);
    format!(
        "test-{label}-{}-{:x}{sequence}",
        std::process::id(),
        nanos % 0xffff_ffff
    )
}

/// Whether the test script says the endpoint is the moto server (`DYNAMODB_EMULATOR=moto`),
/// for the few checks that depend on a DynamoDB guarantee moto does not give.
pub fn emulator_is_moto() -> bool {
    std::env::var("DYNAMODB_EMULATOR").is_ok_and(|e| e == "moto")
}

impl Stack {
    /// The target the environment selects, with fresh tables named after `label`.
    pub async fn from_env(label: &str) -> Result<Self, StackError> {
        let tables = TableNames::with_prefix(&unique_prefix(label));
        let stack = if std::env::var("DYNAMODB_TARGET").is_ok_and(|t| t == "aws") {
            Self {
                client: client_for(None).await,
                tables,
                kind: TargetKind::Aws,
                endpoint: None,
                embedded: None,
            }
        } else if let Ok(endpoint) = std::env::var("AWS_ENDPOINT_URL_DYNAMODB") {
            Self {
                client: client_for(Some(&endpoint)).await,
                tables,
                kind: TargetKind::Endpoint,
                endpoint: Some(endpoint),
                embedded: None,
            }
        } else {
            Self::embedded_with(tables, SocketAddr::from(([127, 0, 0, 1], 0))).await?
        };
        stack.create_tables().await?;
        Ok(stack)
    }

    /// An embedded emulator on `port` of the loopback address, with tables named
    /// `{prefix}-carts` etc.
    pub async fn embedded(prefix: &str, port: u16) -> Result<Self, StackError> {
        Self::embedded_at(prefix, SocketAddr::from(([127, 0, 0, 1], port))).await
    }

    /// An embedded emulator served at `address` (a container network's gateway, say).
    pub async fn embedded_at(prefix: &str, address: SocketAddr) -> Result<Self, StackError> {
        let stack = Self::embedded_with(TableNames::with_prefix(prefix), address).await?;
        stack.create_tables().await?;
        Ok(stack)
    }

    async fn embedded_with(tables: TableNames, address: SocketAddr) -> Result<Self, StackError> {
        let embedded = EmbeddedDynamo::start_at(address)?;
        let endpoint = embedded.endpoint.clone();
        Ok(Self {
            client: client_for(Some(&endpoint)).await,
            tables,
            kind: TargetKind::Embedded,
            endpoint: Some(endpoint),
            embedded: Some(embedded),
        })
    }

    async fn create_tables(&self) -> Result<(), StackError> {
        let definitions = table_definitions(&default_template_path())?;
        for logical_id in [
            "CartsTable",
            "OrdersTable",
            "ReviewsTable",
            "MessagesTable",
            "ConsentTable",
            "StatsTable",
        ] {
            let definition: &TableDefinition = definitions
                .iter()
                .find(|d| d.logical_id == logical_id)
                .ok_or(StackError::MissingTable(logical_id))?;
            let name = self
                .tables
                .for_logical_id(logical_id)
                .ok_or(StackError::MissingTable(logical_id))?;
            definition.create(&self.client, name).await?;
        }
        Ok(())
    }

    /// Deletes the tables this stack created (the embedded emulator simply goes away).
    pub async fn cleanup(self) {
        if self.kind == TargetKind::Embedded {
            return;
        }
        for (_, table) in self.tables.env_vars() {
            let _ = self.client.delete_table().table_name(table).send().await;
        }
    }
}
