//! Table definitions read from the SAM template, so local and test tables are created
//! from the same source as the deployed ones.

use std::path::{Path, PathBuf};

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection, ProjectionType,
    ScalarAttributeType, StreamSpecification, StreamViewType, TimeToLiveSpecification,
};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{path} is not valid YAML: {source}")]
    Yaml { path: PathBuf, source: serde_norway::Error },
    #[error("table {logical_id} in the template: {message}")]
    Table { logical_id: String, message: String },
    #[error("creating table {table}: {message}")]
    Create { table: String, message: String },
}

/// The template at the workspace root.
pub fn default_template_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../template.yaml")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TableDefinition {
    #[serde(skip)]
    pub logical_id: String,
    pub key_schema: Vec<KeyDefinition>,
    pub attribute_definitions: Vec<AttributeDefinitionYaml>,
    #[serde(default)]
    pub global_secondary_indexes: Vec<IndexDefinition>,
    #[serde(default)]
    pub time_to_live_specification: Option<TtlDefinition>,
    #[serde(default)]
    pub stream_specification: Option<StreamDefinition>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StreamDefinition {
    pub stream_view_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KeyDefinition {
    pub attribute_name: String,
    pub key_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct AttributeDefinitionYaml {
    pub attribute_name: String,
    pub attribute_type: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct IndexDefinition {
    pub index_name: String,
    pub key_schema: Vec<KeyDefinition>,
    pub projection: ProjectionDefinition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProjectionDefinition {
    pub projection_type: String,
    #[serde(default)]
    pub non_key_attributes: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TtlDefinition {
    pub attribute_name: String,
    pub enabled: bool,
}

/// Every `AWS::DynamoDB::Table` in the template, by logical id.
pub fn table_definitions(path: &Path) -> Result<Vec<TableDefinition>, TemplateError> {
    let text = std::fs::read_to_string(path).map_err(|source| TemplateError::Read {
        path: path.into(),
        source,
    })?;
    let template: serde_norway::Value = serde_norway::from_str(&text).map_err(|source| TemplateError::Yaml {
        path: path.into(),
        source,
    })?;
    let Some(resources) = template.get("Resources").and_then(|r| r.as_mapping()) else {
        return Ok(Vec::new());
    };
    let mut tables = Vec::new();
    for (logical_id, resource) in resources {
        if resource.get("Type").and_then(|t| t.as_str()) != Some("AWS::DynamoDB::Table") {
            continue;
        }
        let logical_id = logical_id.as_str().unwrap_or_default().to_owned();
        let properties = resource.get("Properties").cloned().unwrap_or_default();
        let mut table: TableDefinition = serde_norway::from_value(properties).map_err(|e| TemplateError::Table {
            logical_id: logical_id.clone(),
            message: e.to_string(),
        })?;
        table.logical_id = logical_id;
        tables.push(table);
    }
    Ok(tables)
}

fn key_schema(keys: &[KeyDefinition], owner: &str) -> Result<Vec<KeySchemaElement>, TemplateError> {
    keys.iter()
        .map(|key| {
            KeySchemaElement::builder()
                .attribute_name(&key.attribute_name)
                .key_type(KeyType::from(key.key_type.as_str()))
                .build()
                .map_err(|e| TemplateError::Table {
                    logical_id: owner.into(),
                    message: e.to_string(),
                })
        })
        .collect()
}

impl TableDefinition {
    /// Creates the table under `name` (on-demand, as in the template), waits until it is
    /// active, and turns TTL on.
    pub async fn create(&self, client: &Client, name: &str) -> Result<(), TemplateError> {
        let create_error = |message: String| TemplateError::Create {
            table: name.into(),
            message,
        };
        let mut request = client
            .create_table()
            .table_name(name)
            .billing_mode(BillingMode::PayPerRequest)
            .set_key_schema(Some(key_schema(&self.key_schema, &self.logical_id)?));
        for attribute in &self.attribute_definitions {
            request = request.attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(&attribute.attribute_name)
                    .attribute_type(ScalarAttributeType::from(attribute.attribute_type.as_str()))
                    .build()
                    .map_err(|e| create_error(e.to_string()))?,
            );
        }
        for index in &self.global_secondary_indexes {
            let projection = Projection::builder()
                .projection_type(ProjectionType::from(index.projection.projection_type.as_str()))
                .set_non_key_attributes(
                    (!index.projection.non_key_attributes.is_empty())
                        .then(|| index.projection.non_key_attributes.clone()),
                )
                .build();
            request = request.global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(&index.index_name)
                    .set_key_schema(Some(key_schema(&index.key_schema, &self.logical_id)?))
                    .projection(projection)
                    .build()
                    .map_err(|e| create_error(e.to_string()))?,
            );
        }
        if let Some(stream) = &self.stream_specification {
            request = request.stream_specification(
                StreamSpecification::builder()
                    .stream_enabled(true)
                    .stream_view_type(StreamViewType::from(stream.stream_view_type.as_str()))
                    .build()
                    .map_err(|e| create_error(e.to_string()))?,
            );
        }
        request
            .send()
            .await
            .map_err(|e| create_error(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
        client
            .wait_until_table_exists()
            .table_name(name)
            .wait(std::time::Duration::from_secs(300))
            .await
            .map_err(|e| create_error(format!("did not become active: {e}")))?;
        if let Some(ttl) = self.time_to_live_specification.as_ref().filter(|ttl| ttl.enabled) {
            client
                .update_time_to_live()
                .table_name(name)
                .time_to_live_specification(
                    TimeToLiveSpecification::builder()
                        .attribute_name(&ttl.attribute_name)
                        .enabled(true)
                        .build()
                        .map_err(|e| create_error(e.to_string()))?,
                )
                .send()
                .await
                .map_err(|e| create_error(aws_sdk_dynamodb::error::DisplayErrorContext(&e).to_string()))?;
        }
        Ok(())
    }
}
