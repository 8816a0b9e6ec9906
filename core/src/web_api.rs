//! Slack's Web API envelope (`team.accessLogs`, `team.integrationLogs`): `ok`, `error`,
//! `paging`, `response_metadata.next_cursor`. Errors come as HTTP 200 with `ok:false`.

use serde::Deserialize;

use crate::slack_error::{describe_body, SlackError};

/// Classic paging, as Slack reports it. `count` is the page size asked for, not the number of
/// items returned (Q27); use the items' length.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct Paging {
    #[serde(default)]
    pub count: u32,
    #[serde(default)]
    pub total: u64,
    #[serde(default)]
    pub page: u32,
    #[serde(default)]
    pub pages: u32,
}

/// The envelope around a Web API list: everything but the list itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    pub paging: Option<Paging>,
    /// `None` when `next_cursor` is empty, null or absent.
    pub next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    ok: Option<bool>,
    #[serde(default)]
    paging: Option<Paging>,
    #[serde(default)]
    response_metadata: Option<Meta>,
}

#[derive(Deserialize)]
pub(crate) struct Meta {
    #[serde(default)]
    pub(crate) next_cursor: Option<String>,
}

/// Checks `ok:true` and reads the envelope. An `ok:false` body becomes the Slack error it names;
/// anything that is not a JSON object with `ok` is `Malformed`.
pub fn parse_envelope(body: &[u8]) -> Result<Envelope, SlackError> {
    let wire: Wire = serde_json::from_slice(body).map_err(|e| SlackError::Malformed {
        status: 200,
        detail: format!("{} ({e})", describe_body(body)),
    })?;
    match wire.ok {
        Some(true) => Ok(Envelope {
            paging: wire.paging,
            next_cursor: wire
                .response_metadata
                .and_then(|m| m.next_cursor)
                .filter(|c| !c.is_empty()),
        }),
        Some(false) => Err(SlackError::from_response(200, None, body)),
        None => Err(SlackError::Malformed {
            status: 200,
            detail: "a JSON body without `ok`".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_paging_and_cursor() {
        let e = parse_envelope(
            br#"{"ok":true,"logins":[],"paging":{"count":100,"total":2,"page":1,"pages":1}}"#,
        )
        .unwrap();
        assert_eq!(e.paging.unwrap().pages, 1);
        assert_eq!(e.next_cursor, None);
        let e =
            parse_envelope(br#"{"ok":true,"response_metadata":{"next_cursor":"abc="}}"#).unwrap();
        assert_eq!(e.next_cursor.as_deref(), Some("abc="));
    }

    #[test]
    fn ok_false_is_the_named_error() {
        let e = parse_envelope(br#"{"ok":false,"error":"paid_only"}"#).unwrap_err();
        assert_eq!(e.code(), "paid_only");
        let e = parse_envelope(
            br#"{"ok":false,"error":"missing_scope","needed":"admin","provided":"identify"}"#,
        )
        .unwrap_err();
        assert!(e.to_string().contains("needed scope: admin"));
        assert!(matches!(
            parse_envelope(b"<html>").unwrap_err(),
            SlackError::Malformed { .. }
        ));
        assert!(matches!(
            parse_envelope(b"{}").unwrap_err(),
            SlackError::Malformed { .. }
        ));
    }
}
