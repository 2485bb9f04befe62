//! What one call sends, in order: status changes from queued (or scheduled) to a terminal
//! status, the recordings, and the analysis once it is ready.

use serde_json::{Value, json};

/// Trouble to add on request, each "every Nth" so that runs are reproducible.
#[derive(Debug, Clone, Copy, Default)]
pub struct Trouble {
    /// Every Nth webhook is delivered twice (VoiceHub retrying after a lost answer).
    pub duplicate_every: Option<usize>,
    /// Every Nth call sends `in-progress` before `started` (a failed `started` retried late).
    pub out_of_order_every: Option<usize>,
    /// Every Nth call also sends a body the bridge must refuse (no `eventId`).
    pub malformed_every: Option<usize>,
}

/// One webhook body to send.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// The call it belongs to.
    pub call_id: String,
    /// Its `eventId` (`None` for a malformed body).
    pub event_id: Option<String>,
    /// Its `eventType`.
    pub event_type: &'static str,
    /// The JSON body.
    pub body: Value,
}

const TERMINAL: [&str; 5] = ["completed", "completed", "unanswered", "busy", "failed"];

/// The webhooks of call number `index` of run `run`, in the order VoiceHub sends them.
/// `analysis_base` is the analysis API's URL prefix; answered calls get an analysis.
pub fn call_events(run: &str, index: usize, analysis_base: &str, trouble: Trouble) -> Vec<Webhook> {
    let call_id = format!("sim-{run}-{index}");
    let agent_id = format!("agt_{:04}", index % 50);
    let mut seq = 0;
    let mut next_id = || {
        seq += 1;
        format!("{run}-{index}-{seq}")
    };
    let at = |second: usize| {
        format!(
            "2026-11-26T10:{:02}:{:02}.000Z",
            (index / 60) % 60,
            second % 60
        )
    };
    let status = |id: String, status: &str, second: usize| Webhook {
        call_id: call_id.clone(),
        event_id: Some(id.clone()),
        event_type: "CallStatusChanged",
        body: json!({
            "eventType": "CallStatusChanged",
            "timestamp": at(second),
            "eventId": id,
            "status": status,
            "callId": call_id,
            "agentId": agent_id,
            "userNumber": format!("+96655{:07}", index),
            "agentNumber": "+966115550199",
        }),
    };

    let terminal = TERMINAL[index % TERMINAL.len()];
    let answered = terminal == "completed";
    let mut events = vec![status(
        next_id(),
        if index.is_multiple_of(10) {
            "scheduled"
        } else {
            "queued"
        },
        0,
    )];
    if answered || terminal == "failed" {
        let started = status(next_id(), "started", 2);
        let talking = status(next_id(), "in-progress", 3);
        if trouble
            .out_of_order_every
            .is_some_and(|n| index.is_multiple_of(n))
        {
            events.extend([talking, started]);
        } else {
            events.extend([started, talking]);
        }
    }
    events.push(status(next_id(), terminal, 30));
    if answered {
        let id = next_id();
        events.push(Webhook {
            call_id: call_id.clone(),
            event_id: Some(id.clone()),
            event_type: "RecordingsAvailable",
            body: json!({
                "eventType": "RecordingsAvailable",
                "timestamp": at(35),
                "eventId": id,
                "callId": call_id,
                "recordings": [
                    format!("recordings/{agent_id}/{call_id}/mixed.wav"),
                    format!("recordings/{agent_id}/{call_id}/user.wav"),
                ],
            }),
        });
        let id = next_id();
        let analysis_id = format!("anl_{run}_{index}");
        events.push(Webhook {
            call_id: call_id.clone(),
            event_id: Some(id.clone()),
            event_type: "AnalysisResultReady",
            body: json!({
                "eventType": "AnalysisResultReady",
                "analysisId": analysis_id,
                "timestamp": at(50),
                "eventId": id,
                "callId": call_id,
                "analysisResultUrl": format!("{analysis_base}/{analysis_id}"),
            }),
        });
    }
    if trouble
        .malformed_every
        .is_some_and(|n| index.is_multiple_of(n))
    {
        events.push(Webhook {
            call_id: call_id.clone(),
            event_id: None,
            event_type: "CallStatusChanged",
            body: json!({"eventType": "CallStatusChanged", "callId": call_id, "status": 7}),
        });
    }
    events
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answered_call_goes_from_queued_to_its_analysis() {
        let events = call_events("r", 1, "http://a", Trouble::default());
        let kinds: Vec<&str> = events.iter().map(|e| e.event_type).collect();
        assert_eq!(
            kinds,
            [
                "CallStatusChanged",
                "CallStatusChanged",
                "CallStatusChanged",
                "CallStatusChanged",
                "RecordingsAvailable",
                "AnalysisResultReady"
            ]
        );
        let statuses: Vec<&str> = events[..4]
            .iter()
            .map(|e| e.body["status"].as_str().unwrap_or_default())
            .collect();
        assert_eq!(statuses, ["queued", "started", "in-progress", "completed"]);
        assert_eq!(events[5].body["analysisResultUrl"], "http://a/anl_r_1");
    }

    #[test]
    fn trouble_reorders_and_adds_a_malformed_body() {
        let trouble = Trouble {
            out_of_order_every: Some(1),
            malformed_every: Some(1),
            ..Trouble::default()
        };
        let events = call_events("r", 1, "http://a", trouble);
        assert_eq!(events[1].body["status"], "in-progress");
        assert_eq!(events[2].body["status"], "started");
        let last = events.last().map(|e| e.event_id.is_none());
        assert_eq!(last, Some(true));
    }

    #[test]
    fn unanswered_calls_have_no_recordings_or_analysis() {
        let events = call_events("r", 2, "http://a", Trouble::default());
        assert!(events.iter().all(|e| e.event_type == "CallStatusChanged"));
        assert_eq!(
            events.last().map(|e| e.body["status"].clone()),
            Some("unanswered".into())
        );
    }
}
