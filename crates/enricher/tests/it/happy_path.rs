use std::collections::HashSet;

use voicehub_model::enriched::AnalysisEnriched;

use crate::helpers::{API_KEY, fixture, spawn_enricher};

#[tokio::test(flavor = "multi_thread")]
async fn every_analysis_ready_record_yields_one_enriched_record_with_the_analysis() {
    let enricher = spawn_enricher().await;
    let analysis: serde_json::Value =
        serde_json::from_slice(&fixture("analysis-result.json")).unwrap();

    for i in 0..6 {
        let url = enricher.api.url(&format!("/api/v1/analysis-results/a{i}"));
        enricher
            .send_event(&format!("e{i}"), &format!("call-{}", i % 3), &url)
            .await;
    }

    let records = enricher.enriched(6).await;
    assert_eq!(records.len(), 6);
    let ids: HashSet<&str> = records.iter().filter_map(|r| r.header("ce_id")).collect();
    for i in 0..6 {
        assert!(ids.contains(AnalysisEnriched::ce_id("acme", &format!("e{i}")).as_str()));
    }
    for record in &records {
        let value = record.json();
        assert_eq!(value["analysis"], analysis);
        assert_eq!(record.key.as_deref(), value["callId"].as_str());
        assert_eq!(
            record.header("ce_type"),
            Some("ai.dataqueue.voicehub.AnalysisEnriched")
        );
    }
    assert!(
        enricher
            .api
            .all_seen()
            .iter()
            .all(|s| s.api_key.as_deref() == Some(API_KEY))
    );
}
