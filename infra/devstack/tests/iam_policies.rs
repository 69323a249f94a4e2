//! Least privilege, checked against the code: each function's IAM policy in template.yaml
//! grants exactly the calls its code path makes, on its own tables, indexes and secret,
//! and nothing with a wildcard. Also checks that the saved Logs Insights queries and the
//! alarms name log messages and metrics that the code really writes.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use devstack::template::default_template_path;
use serde_norway::Value;

/// What each function may do: (action, resource), the resource written as in the template
/// (see [`resource_text`]). This mirrors the SDK calls on each function's code path:
///
/// clean-expired-carts (`jobs/clean_expired_carts/` through its `dynamo.rs`, `impl CartStore for DynamoCarts`):
/// - `expired_page`: `.query()` on `expiry-index`
/// - `delete_batch_if_expired`: `.batch_execute_statement()` of PartiQL `DELETE`s
///   (`dynamodb:PartiQLDelete`) on the carts table
/// - `delete_if_expired`: `.delete_item()` on the carts table (what a batch could not do)
///
/// request-reviews (`jobs/request_reviews/` through its `dynamo.rs`,
/// `impl ReviewRequestStore for DynamoOrders`, and `secrets.rs`):
/// - `pending_page`, `in_flight`, `awaiting_reconciliation`: `.query()` on `review-pending-index`
/// - `claim`, `settle` (`update_claimed`), `close`, `park_stale_claim`: `.update_item()` on the orders table
/// - `has_review`: `.get_item()` on the reviews table (never on the orders table); `look_up`:
///   `.batch_get_item()` on the reviews and consent tables, a page of due orders at once
/// - `consent` (`DynamoConsents::get`): `.get_item()`, `record_sent` and `record_twilio_opt_out`
///   (`DynamoConsents::record_sent`, `record`): `.update_item()`, on the consent table
/// - `twilio_config` (`secrets.rs`): `.get_secret_value()` on `TwilioSecretArn`, at cold start
///
/// record-review-reply (`jobs/record_review_reply/` through its `dynamo.rs`,
/// `impl ReplyStore for DynamoReplies`, its `alerts.rs`, and `secrets.rs`):
/// - `requested_orders`: `.query()` on `review-reply-index`
/// - `review`: `.get_item()`, `put_review`/`correct_review`: `.put_item()` (conditional),
///   `claim_alert` and `release_alert`: `.update_item()`, all on the reviews table (never on the orders table)
/// - `record_consent` (`DynamoConsents::record`) and `remember_rating`
///   (`DynamoConsents::remember_rating`): `.update_item()`, `knows_rating`
///   (`DynamoConsents::knows_rating`): `.get_item()`, on the consent table
/// - `record_delivery` (`DynamoDeliveries::record`, `messages/delivery.rs`): `.update_item()`
///   on the messages table, and on the orders table for a review request
/// - `count` (`DailyCounters::first_time`'s `.put_item()`, the message's marker, and
///   `DailyCounters::add`'s `.update_item()`, `report/counters.rs`) on the stats table
/// - `ShopAlerts::alert`: `.publish()` on `NegativeReviewTopic`
/// - `twilio_config` (`secrets.rs`): `.get_secret_value()` on `TwilioSecretArn`, at cold start
///
/// derive-schedule (`jobs/derive_schedule/` through its `dynamo.rs`, `impl ScheduleStore for DynamoSchedule`):
/// - `DynamoCarts::derive_expiry`: `.update_item()` on the carts table
/// - `DynamoOrders::queue_for_review`: `.update_item()` on the orders table
/// - `DynamoOutbox::apply` (`messages/outbox.rs`): `Schedule` and `Postpone` (`put`):
///   `.put_item()`, `Drop` (`close_pending`): `.update_item()`, on the messages table
/// - `DynamoTally::count` (`report/events.rs`): `DailyCounters::first_time`'s `.put_item()`
///   and `add`'s `.update_item()` on the stats table, `DynamoConsents::is_first_order`'s
///   `.update_item()` on the consent table, `DynamoOutbox::message`'s `.get_item()` on the
///   messages table (was a converted cart's reminder sent?)
///
/// send-messages (`jobs/send_messages/` through `impl Outbox for DynamoOutbox` in
/// `messages/outbox.rs`, and `secrets.rs`):
/// - `due_page`, `in_flight` (`partition`), `awaiting_reconciliation`: `.query()` on `due-index`
/// - `claim`: `.transact_write_items()` of an `Update` of the message (`dynamodb:UpdateItem`)
///   and `ConditionCheck`s (`dynamodb:ConditionCheckItem`) on the order or the cart, and on
///   the reviews table for the review reminder
/// - `claim` refused without reasons (`message`) and `why_ineligible`: `.get_item()` on the
///   messages table and on the orders, carts and reviews tables
/// - `settle` (`update_claimed`), `close` (`close_pending`), `park_stale_claim`: `.update_item()` on the messages table
/// - `settle_all` (`settle_sent_batch`): `.batch_execute_statement()` of PartiQL `UPDATE`s
///   (`dynamodb:PartiQLUpdate`) on the messages table, for the sent ones
/// - the claim's `Update` of the customer (consent and caps, `DynamoConsents::claim_update`),
///   `why_refused`'s `.get_item()`, and `record_opt_out`'s and `give_back_caps`'s (a released
///   or requeued marketing message) `.update_item()` on the consent table
/// - `twilio_config` (`secrets.rs`): `.get_secret_value()` on `TwilioSecretArn`, at cold start
/// - reconciliation (`messages/reconcile.rs`): `parked` reads the `reconcile` partition of
///   `due-index`, `resolve` is an `.update_item()` on the messages table
/// - `count` (`DailyCounters::add`): `.update_item()` on the stats table, once per run
///   (request-reviews too)
///
/// daily-report (`jobs/daily_report/`): `DailyCounters::day`'s `.get_item()`,
/// `claim_report` and `settle_report`'s `.update_item()` on the stats table;
/// `OwnerChannels::deliver`'s `.publish()` on `DailyReportTopic`; `twilio_config` when the
/// report goes to WhatsApp
///
/// (Reading the streams is the event source mapping's: SAM adds AWS's managed
/// `AWSLambdaDynamoDBExecutionRole` to the role for that, outside `Policies`.)
///
/// erase-customer (`jobs/erase_customer/dynamo.rs`, `DynamoErasure::erase`): `keys_of`:
/// `.scan()` of the orders, carts, reviews and messages tables; `strip` and
/// `close_waiting_message`: `.update_item()` on them; the consent item's `.delete_item()`
/// (and `.get_item()` in a dry run)
///
/// Not on any function's path, so not granted: the writer functions and test helpers
/// (`DynamoCarts::put`/`extend`/`get`, `DynamoOrders::put_new`/`complete`/`get_item`/`request_status`).
const ALLOWED: &[(&str, &[(&str, &str)])] = &[
    (
        "DeriveScheduleFunction",
        &[
            ("dynamodb:UpdateItem", "!GetAtt CartsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:PutItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:PutItem", "!GetAtt StatsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt StatsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ConsentTable.Arn"),
        ],
    ),
    (
        "SendMessagesFunction",
        &[
            ("dynamodb:Query", "!Sub ${MessagesTable.Arn}/index/due-index"),
            ("dynamodb:UpdateItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:PartiQLUpdate", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:ConditionCheckItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:ConditionCheckItem", "!GetAtt CartsTable.Arn"),
            ("dynamodb:ConditionCheckItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt CartsTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt StatsTable.Arn"),
            ("secretsmanager:GetSecretValue", "!Ref TwilioSecretArn"),
        ],
    ),
    (
        "DailyReportFunction",
        &[
            ("dynamodb:GetItem", "!GetAtt StatsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt StatsTable.Arn"),
            ("sns:Publish", "!Ref DailyReportTopic"),
            ("secretsmanager:GetSecretValue", "!Ref TwilioSecretArn"),
        ],
    ),
    (
        "EraseCustomerFunction",
        &[
            ("dynamodb:Scan", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:Scan", "!GetAtt CartsTable.Arn"),
            ("dynamodb:Scan", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:Scan", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt CartsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:DeleteItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ConsentTable.Arn"),
        ],
    ),
    (
        "CleanExpiredCartsFunction",
        &[
            ("dynamodb:Query", "!Sub ${CartsTable.Arn}/index/expiry-index"),
            ("dynamodb:PartiQLDelete", "!GetAtt CartsTable.Arn"),
            ("dynamodb:DeleteItem", "!GetAtt CartsTable.Arn"),
        ],
    ),
    (
        "RequestReviewsFunction",
        &[
            ("dynamodb:Query", "!Sub ${OrdersTable.Arn}/index/review-pending-index"),
            ("dynamodb:UpdateItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:BatchGetItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:BatchGetItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt StatsTable.Arn"),
            ("secretsmanager:GetSecretValue", "!Ref TwilioSecretArn"),
        ],
    ),
    (
        "RecordReviewReplyFunction",
        &[
            ("dynamodb:Query", "!Sub ${OrdersTable.Arn}/index/review-reply-index"),
            ("dynamodb:GetItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:PutItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ReviewsTable.Arn"),
            ("dynamodb:GetItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt ConsentTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt MessagesTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt OrdersTable.Arn"),
            ("dynamodb:PutItem", "!GetAtt StatsTable.Arn"),
            ("dynamodb:UpdateItem", "!GetAtt StatsTable.Arn"),
            ("sns:Publish", "!Ref NegativeReviewTopic"),
            ("secretsmanager:GetSecretValue", "!Ref TwilioSecretArn"),
        ],
    ),
];

/// The tables each function may touch (and their indexes).
const OWN_TABLES: &[(&str, &[&str])] = &[
    ("CleanExpiredCartsFunction", &["CartsTable"]),
    (
        "EraseCustomerFunction",
        &[
            "OrdersTable",
            "CartsTable",
            "ReviewsTable",
            "MessagesTable",
            "ConsentTable",
        ],
    ),
    (
        "DeriveScheduleFunction",
        &[
            "CartsTable",
            "OrdersTable",
            "MessagesTable",
            "StatsTable",
            "ConsentTable",
        ],
    ),
    (
        "SendMessagesFunction",
        &[
            "MessagesTable",
            "OrdersTable",
            "CartsTable",
            "ReviewsTable",
            "ConsentTable",
            "StatsTable",
        ],
    ),
    (
        "RequestReviewsFunction",
        &["OrdersTable", "ReviewsTable", "ConsentTable", "StatsTable"],
    ),
    (
        "RecordReviewReplyFunction",
        &[
            "OrdersTable",
            "ReviewsTable",
            "ConsentTable",
            "MessagesTable",
            "StatsTable",
        ],
    ),
    ("DailyReportFunction", &["StatsTable"]),
];

fn template() -> Value {
    let path = default_template_path();
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

fn resources(template: &Value) -> &serde_norway::Mapping {
    template["Resources"].as_mapping().expect("Resources is a mapping")
}

/// A resource or action as text: a plain string as is, a CloudFormation tag as
/// `!Tag value` (`!GetAtt CartsTable.Arn`, `!Sub ${X.Arn}/index/i`, `!Ref P`).
fn resource_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Tagged(tagged) => match &tagged.value {
            Value::String(text) => format!("{} {text}", tagged.tag),
            other => panic!("unexpected {} argument in a policy: {other:?}", tagged.tag),
        },
        other => panic!("unexpected value in a policy: {other:?}"),
    }
}

/// A field that may be one value or a list of them.
fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(items) => items.iter().collect(),
        Value::Null => Vec::new(),
        one => vec![one],
    }
}

/// The statements of a function's `Policies`, both branches of an `!If` included
/// (`!Ref AWS::NoValue` dropped). Anything other than an inline policy document (a
/// managed policy name, a SAM policy template) fails: its actions cannot be checked here.
fn statements(function: &str, properties: &Value) -> Vec<Value> {
    let mut found = Vec::new();
    for policy in one_or_many(&properties["Policies"]) {
        let document = policy
            .as_mapping()
            .filter(|doc| doc.contains_key("Statement"))
            .unwrap_or_else(|| panic!("{function}: only inline policy documents can be checked, got {policy:?}"));
        for statement in one_or_many(&document["Statement"]) {
            match statement {
                Value::Tagged(tagged) if tagged.tag == "If" => {
                    let branches = tagged.value.as_sequence().expect("!If takes a list");
                    for branch in &branches[1..] {
                        if let Value::Tagged(no_value) = branch
                            && no_value.tag == "Ref"
                            && no_value.value.as_str() == Some("AWS::NoValue")
                        {
                            continue;
                        }
                        found.push(branch.clone());
                    }
                }
                other => found.push(other.clone()),
            }
        }
    }
    found
}

/// Every (action, resource) pair a function's policy allows.
fn grants(function: &str, properties: &Value) -> BTreeSet<(String, String)> {
    let mut grants = BTreeSet::new();
    for statement in statements(function, properties) {
        let sid = statement["Sid"].as_str().unwrap_or("(no Sid)").to_owned();
        assert_eq!(
            statement["Effect"].as_str(),
            Some("Allow"),
            "{function} {sid}: only Allow statements"
        );
        for key in ["NotAction", "NotResource", "Principal", "NotPrincipal"] {
            assert!(
                statement.get(key).is_none(),
                "{function} {sid}: {key} is not allowed here"
            );
        }
        let actions: Vec<String> = one_or_many(&statement["Action"])
            .into_iter()
            .map(resource_text)
            .collect();
        let targets: Vec<String> = one_or_many(&statement["Resource"])
            .into_iter()
            .map(resource_text)
            .collect();
        assert!(!actions.is_empty(), "{function} {sid}: no Action");
        assert!(!targets.is_empty(), "{function} {sid}: no Resource");
        for action in &actions {
            assert!(!action.contains('*'), "{function} {sid}: wildcard action {action}");
        }
        for target in &targets {
            assert!(!target.contains('*'), "{function} {sid}: wildcard resource {target}");
        }
        for action in &actions {
            for target in &targets {
                grants.insert((action.clone(), target.clone()));
            }
        }
    }
    grants
}

fn functions(template: &Value) -> Vec<(String, Value)> {
    resources(template)
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::Serverless::Function"))
        .map(|(name, resource)| (name.as_str().unwrap().to_owned(), resource["Properties"].clone()))
        .collect()
}

#[test]
fn each_function_is_granted_exactly_the_calls_its_code_makes() {
    let template = template();
    let functions = functions(&template);
    let names: BTreeSet<&str> = functions.iter().map(|(name, _)| name.as_str()).collect();
    let known: BTreeSet<&str> = ALLOWED.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, known, "every function needs an allow-list here");
    assert!(
        template["Globals"]["Function"].get("Policies").is_none(),
        "Globals must not add policies to every function"
    );
    for (function, properties) in &functions {
        assert!(
            properties.get("Role").is_none(),
            "{function}: a Role would bypass these policies"
        );
        let expected: BTreeSet<(String, String)> = ALLOWED
            .iter()
            .find(|(name, _)| name == function)
            .unwrap()
            .1
            .iter()
            .map(|(action, resource)| (action.to_string(), resource.to_string()))
            .collect();
        let actual = grants(function, properties);
        let extra: Vec<_> = actual.difference(&expected).collect();
        let missing: Vec<_> = expected.difference(&actual).collect();
        assert!(
            extra.is_empty() && missing.is_empty(),
            "{function}: the policy does not match the code's calls.\n  granted but never called: {extra:?}\n  called but not granted: {missing:?}"
        );
    }
}

#[test]
fn dynamodb_grants_name_only_the_functions_own_tables_and_indexes() {
    let template = template();
    let resources = resources(&template);
    let tables: BTreeSet<&str> = resources
        .iter()
        .filter(|(_, resource)| resource["Type"].as_str() == Some("AWS::DynamoDB::Table"))
        .map(|(name, _)| name.as_str().unwrap())
        .collect();
    for (function, properties) in functions(&template) {
        let own = OWN_TABLES.iter().find(|(name, _)| *name == function).unwrap().1;
        for (action, target) in grants(&function, &properties) {
            if !action.starts_with("dynamodb:") {
                continue;
            }
            let named: Vec<&str> = tables.iter().copied().filter(|table| target.contains(table)).collect();
            assert_eq!(
                named.len(),
                1,
                "{function}: {action} on {target} must name exactly one table"
            );
            assert!(
                own.contains(&named[0]),
                "{function}: {action} on {target}, which is not one of its tables {own:?}"
            );
            let is_table = target == format!("!GetAtt {}.Arn", named[0]);
            let is_index = target.starts_with(&format!("!Sub ${{{}.Arn}}/index/", named[0]));
            assert!(
                is_table || is_index,
                "{function}: {action} on {target}: not the table or one of its indexes"
            );
            if is_index {
                let index = target.rsplit('/').next().unwrap();
                let declared = resources[named[0]]["Properties"]["GlobalSecondaryIndexes"]
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .any(|gsi| gsi["IndexName"].as_str() == Some(index));
                assert!(declared, "{function}: index {index} is not declared on {}", named[0]);
            }
        }
    }
}

/// A policy with an action the code does not call fails the check.
#[test]
fn an_extra_action_is_caught() {
    let template = template();
    let (function, mut properties) = functions(&template)
        .into_iter()
        .find(|(name, _)| name == "CleanExpiredCartsFunction")
        .unwrap();
    let statement = &mut properties["Policies"][0]["Statement"][1];
    statement["Action"] = Value::Sequence(vec![
        Value::String("dynamodb:PartiQLDelete".into()),
        Value::String("dynamodb:DeleteItem".into()),
        Value::String("dynamodb:Scan".into()),
    ]);
    let actual = grants(&function, &properties);
    assert!(actual.contains(&("dynamodb:Scan".to_string(), "!GetAtt CartsTable.Arn".to_string())));
    let expected = ALLOWED
        .iter()
        .find(|(name, _)| *name == "CleanExpiredCartsFunction")
        .unwrap()
        .1
        .len();
    assert_eq!(actual.len(), expected + 1);
}

fn rust_sources(dir: &Path, out: &mut String) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_sources(&path, out);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            out.push_str(&std::fs::read_to_string(&path).unwrap());
        }
    }
}

fn library_source() -> String {
    let mut text = String::new();
    rust_sources(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../crates/backoffice/src"),
        &mut text,
    );
    text
}

/// The double-quoted strings of a Logs Insights query.
fn quoted(query: &str) -> Vec<&str> {
    query.split('"').skip(1).step_by(2).collect()
}

#[test]
fn saved_queries_filter_on_messages_the_code_logs() {
    let template = template();
    let source = library_source();
    let mut checked = 0;
    for (name, resource) in resources(&template) {
        if resource["Type"].as_str() != Some("AWS::Logs::QueryDefinition") {
            continue;
        }
        let query = resource["Properties"]["QueryString"].as_str().unwrap();
        for text in quoted(query) {
            assert!(
                source.contains(&format!("\"{text}\"")),
                "{name:?}: {text:?} is not a string literal in crates/backoffice/src"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the three saved queries, checked {checked} strings"
    );
}

#[test]
fn alarms_watch_metrics_the_code_emits() {
    let template = template();
    // Each function names its metrics in its jobs/<function>/metrics.rs.
    let metrics_source = library_source();
    let mut checked = 0;
    for (name, resource) in resources(&template) {
        if resource["Type"].as_str() != Some("AWS::CloudWatch::Alarm") {
            continue;
        }
        let properties = &resource["Properties"];
        let mut watched = vec![(properties["Namespace"].clone(), properties["MetricName"].clone())];
        for metric in one_or_many(&properties["Metrics"]) {
            let stat = &metric["MetricStat"]["Metric"];
            watched.push((stat["Namespace"].clone(), stat["MetricName"].clone()));
        }
        for (namespace, metric) in watched {
            if namespace.as_str() != Some("ShopBackOffice") {
                continue;
            }
            let metric = metric.as_str().unwrap();
            assert!(
                metrics_source.contains(&format!("\"{metric}\"")),
                "{name:?}: metric {metric} is not a string literal in crates/backoffice/src"
            );
            checked += 1;
        }
    }
    assert!(
        checked >= 7,
        "expected the ShopBackOffice alarms, checked {checked} metrics"
    );
}

/// The parameter a `!If [Condition, !Ref Parameter, !Ref AWS::NoValue]` reserves with.
fn reserved_concurrency_parameter(function: &str, properties: &Value) -> String {
    let reserved = &properties["ReservedConcurrentExecutions"];
    let Value::Tagged(tagged) = reserved else {
        panic!("{function}: ReservedConcurrentExecutions must be set (an !If on its parameter), got {reserved:?}")
    };
    let branches = tagged.value.as_sequence().expect("!If takes a list");
    resource_text(&branches[1])
        .strip_prefix("!Ref ")
        .unwrap_or_else(|| panic!("{function}: the reserved branch must !Ref a parameter"))
        .to_owned()
}

#[test]
fn every_function_has_a_concurrency_limit_from_a_parameter() {
    let template = template();
    for (function, properties) in functions(&template) {
        let parameter = reserved_concurrency_parameter(&function, &properties);
        let default = template["Parameters"][parameter.as_str()]["Default"]
            .as_u64()
            .unwrap_or_else(|| panic!("{function}: parameter {parameter} needs a numeric Default"));
        assert!(default >= 1, "{function}: {parameter} defaults to {default}");
    }
    let webhook = &resources(&template)["RecordReviewReplyFunction"]["Properties"];
    assert_eq!(
        reserved_concurrency_parameter("RecordReviewReplyFunction", webhook),
        "WebhookReservedConcurrency",
        "the public function has a limit of its own"
    );
}

#[test]
fn system_logs_keep_the_report_lines_the_runbook_reads() {
    let template = template();
    // platform.start / platform.report are INFO-level system logs.
    let level = template["Globals"]["Function"]["LoggingConfig"]["SystemLogLevel"].as_str();
    assert!(matches!(level, Some("INFO" | "DEBUG")), "SystemLogLevel {level:?}");
    let operations = default_template_path().with_file_name("docs").join("operations.md");
    let operations = std::fs::read_to_string(operations).unwrap();
    assert!(
        operations.contains("platform.report"),
        "the runbook's query reads platform.report"
    );
}
