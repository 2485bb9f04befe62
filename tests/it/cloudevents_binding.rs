//! Every record type the bridge writes decodes with the official CloudEvents Rust SDK's Kafka
//! binding, after a real round trip through a broker, with the attributes the contract names.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use cloudevents::binding::rdkafka::MessageExt;
use cloudevents::{AttributesReader, Data};
use rdkafka::Message;
use rdkafka::producer::DefaultProducerContext;
use voicehub_model::analysis::AnalysisResult;
use voicehub_model::enriched::AnalysisEnriched;
use voicehub_model::record::{DeadLetter, Provenance, Record, Stage};
use voicehub_model::{Timestamp, WebhookEvent, parse_webhook};
use voicehub_runtime::kafka;
use voicehub_runtime::settings::KafkaSettings;
use voicehub_testkit::TestBroker;

fn fixtures() -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/voicehub");
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_record_type_decodes_with_the_cloudevents_sdk() -> anyhow::Result<()> {
    // Arrange: one broker, every contract topic, the contract's producer.
    let broker = TestBroker::start().await?;
    let mut settings = KafkaSettings {
        bootstrap_servers: broker.bootstrap_servers(),
        topics: broker.topics(),
        ..KafkaSettings::default()
    };
    settings.provision.partitions = 2;
    settings.provision.replication_factor = 1;
    let topics: Vec<String> = settings
        .topics
        .all()
        .iter()
        .map(|(_, t)| t.to_string())
        .collect();
    let topic_refs: Vec<&str> = topics.iter().map(String::as_str).collect();
    kafka::ensure_topics(&settings, &topic_refs, Duration::from_secs(10)).await?;
    let producer = kafka::create_producer(&settings, DefaultProducerContext)?;
    let provenance = Provenance {
        source: "acme",
        received_at: Timestamp::parse("2025-10-14T09:30:00.250Z")?,
        bridge_version: "1.2.3",
    };

    // Act: every example as an event record, plus an enriched record and a dead letter.
    let mut sent: Vec<(String, Record)> = Vec::new();
    let mut analysis_event = None;
    let mut analysis = None;
    for (name, bytes) in fixtures() {
        if name == "analysis-result.json" {
            analysis = Some(AnalysisResult::parse(&bytes)?);
            continue;
        }
        let event = parse_webhook(&bytes)?;
        let topic = settings.topics.for_kind(event.kind()).to_owned();
        sent.push((topic, event.to_record(&provenance)));
        if let WebhookEvent::AnalysisResultReady(e) = event {
            analysis_event = Some(e);
        }
    }
    let enriched = AnalysisEnriched::new(
        &analysis_event.expect("an AnalysisResultReady example"),
        analysis.expect("an analysis example"),
        Timestamp::parse("2025-10-14T09:30:01Z")?,
    );
    sent.push((
        settings.topics.analysis_enriched.clone(),
        enriched.to_record(&provenance),
    ));
    sent.push((
        settings.topics.dead_letter.clone(),
        DeadLetter {
            stage: Stage::Ingress,
            reason: "invalid_json",
            error: "expected value at line 1 column 1",
            original: b"\x00\xffnot json",
            original_content_type: "application/octet-stream",
            subject: None,
        }
        .to_record(&provenance),
    ));
    for (topic, record) in &sent {
        kafka::produce(&producer, topic, record, Duration::from_secs(5)).await?;
    }

    // Assert: read every record back through a consumer group and decode it with the SDK.
    let by_id: HashMap<&str, &Record> = sent
        .iter()
        .map(|(_, r)| (r.header("ce_id").unwrap(), r))
        .collect();
    let consumer = broker.group_consumer(&broker.name("cloudevents-sdk"), &topic_refs)?;
    let mut decoded = 0;
    while decoded < sent.len() {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await??;
        let event = message
            .to_event()
            .map_err(|e| anyhow::anyhow!("{}: not a CloudEvent: {e}", message.topic()))?;
        let record = by_id[event.id()];

        assert_eq!(event.specversion().as_str(), "1.0");
        assert_eq!(event.ty(), record.header("ce_type").unwrap());
        assert_eq!(event.source().as_str(), "/voicehub/sources/acme");
        assert_eq!(event.subject(), record.header("ce_subject"));
        let time = event
            .time()
            .expect("ce_time")
            .to_rfc3339_opts(chrono_secs(), true);
        assert_eq!(Some(time.as_str()), record.header("ce_time"));
        assert_eq!(event.datacontenttype(), record.header("content-type"));
        assert_eq!(
            event.extension("bridgereceivedat").map(|v| v.to_string()),
            Some("2025-10-14T09:30:00.250Z".into())
        );
        assert_eq!(
            event.extension("bridgeversion").map(|v| v.to_string()),
            Some("1.2.3".into())
        );
        match event.data() {
            Some(Data::Json(json)) => {
                assert_eq!(
                    *json,
                    serde_json::from_slice::<serde_json::Value>(&record.value)?
                );
            }
            Some(Data::Binary(bytes)) => assert_eq!(*bytes, record.value),
            other => panic!("unexpected data {other:?}"),
        }
        if event.ty() == "ai.dataqueue.voicehub.bridge.DeadLetter" {
            assert_eq!(
                event.extension("deadletterreason").map(|v| v.to_string()),
                Some("invalid_json".into())
            );
            assert_eq!(message.key(), None);
        } else {
            assert_eq!(message.key(), record.key.as_deref().map(str::as_bytes));
        }
        decoded += 1;
    }
    Ok(())
}

/// The SDK's `time` is a chrono instant; print it with milliseconds like the bridge does.
fn chrono_secs() -> chrono::SecondsFormat {
    chrono::SecondsFormat::Millis
}
