//! The report's figures as metrics: the dashboard's "Daily report" row plots these, so it
//! shows the numbers the owner received. Totals with the dimension `Function`, each kind's
//! messages with `Function` and `Kind`.

use super::FUNCTION_NAME;
use crate::report::DailyReport;
use crate::runtime::metrics::{Metric, MetricDocument, function_dimension};

pub fn metrics(report: &DailyReport) -> Vec<MetricDocument> {
    let percent = |ratio: Option<f64>| ratio.map_or(0, |r| (r * 100.0).round() as u64);
    let mut documents = vec![MetricDocument {
        dimensions: function_dimension(FUNCTION_NAME),
        metrics: vec![
            Metric::count("ReportOrders", report.orders),
            Metric::count("ReportRevenueCents", report.revenue_cents),
            Metric::count("ReportNewCustomers", report.new_customers),
            Metric::count("ReportReturningCustomers", report.returning_customers),
            Metric::count("ReportCartsAbandoned", report.carts_abandoned),
            Metric::count("ReportCartsRecovered", report.carts_recovered),
            Metric::count("ReportReviewRequests", report.review_requests),
            Metric::count("ReportReviews", report.reviews),
            Metric::count("ReportReviewConversionPercent", percent(report.review_conversion)),
            Metric::count(
                "ReportAverageRatingTenths",
                report.average_rating.map_or(0, |r| (r * 10.0).round() as u64),
            ),
            Metric::count("ReportNegativeReviews", report.negative_reviews.len() as u64),
            Metric::count("ReportMessagesReceived", report.received),
        ],
    }];
    for (kind, figures) in &report.messages {
        let mut dimensions = function_dimension(FUNCTION_NAME);
        dimensions.push(("Kind", kind.as_str().to_owned()));
        documents.push(MetricDocument {
            dimensions,
            metrics: vec![
                Metric::count("ReportMessagesSent", figures.sent),
                Metric::count("ReportMessagesDelivered", figures.delivered),
                Metric::count("ReportMessagesRead", figures.read),
                Metric::count("ReportMessagesFailed", figures.failed),
            ],
        });
    }
    documents
}
