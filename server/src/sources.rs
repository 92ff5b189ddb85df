//! Sources: the names webhooks arrive under (`/hooks/{source}`) and what each one expects:
//! its signature scheme and secrets, whether a bad signature is refused, and the answer a
//! sender gets. Loaded from the `--config` TOML file; a name not in it is created on first
//! use, unsigned, with the default answer.

use std::{collections::HashMap, path::Path, sync::Arc};

use serde::Deserialize;
use toml::Spanned;

use crate::{
    delivery::SourceName,
    signature::{CustomHmac, Encoding, Scheme, SignedPayload, SigningSecret, Verifier},
};

/// The answer a source gives to a delivery it kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CustomResponse {
    pub status: axum::http::StatusCode,
    pub body: String,
    pub delay_ms: u64,
}

/// Everything ingestion needs to know about one source.
#[derive(Debug)]
pub struct SourceSettings {
    pub verifier: Verifier,
    /// When true, a delivery whose signature is not valid gets 401 (and is still kept).
    pub enforce: bool,
    /// `None`: answer `200 {"deliveryId": ...}`.
    pub response: Option<CustomResponse>,
}

impl SourceSettings {
    /// The settings of a source that was not configured: nothing checked, default answer.
    pub fn unconfigured() -> Self {
        Self {
            verifier: Verifier {
                scheme: Scheme::None,
                secrets: Vec::new(),
                tolerance_secs: 300,
            },
            enforce: false,
            response: None,
        }
    }
}

/// The configured sources, and the settings of every other one.
#[derive(Debug)]
pub struct Sources {
    configured: HashMap<String, Arc<SourceSettings>>,
    unconfigured: Arc<SourceSettings>,
}

impl Default for Sources {
    fn default() -> Self {
        Self {
            configured: HashMap::new(),
            unconfigured: Arc::new(SourceSettings::unconfigured()),
        }
    }
}

impl Sources {
    /// Reads and validates a sources file. Errors name the file, the line and the problem.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("{}: cannot read the config file: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}:{e}", path.display()))
    }

    /// Parses a sources file; an error starts with `line:column: `.
    pub fn parse(text: &str) -> Result<Self, String> {
        let at = |span: std::ops::Range<usize>| line_and_column(text, span.start);
        let file: SourcesFile = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(at).unwrap_or((1, 1));
            format!("{line}:{column}: {}", e.message())
        })?;
        let mut sources = Self::default();
        for entry in file.source {
            let (line, column) = at(entry.name.span());
            let name = entry.name.get_ref().clone();
            let settings = entry.into_settings().map_err(|(span, message)| {
                let (line, column) = at(span);
                format!("{line}:{column}: {message}")
            })?;
            let slug = SourceName::parse(&name).map_err(|e| format!("{line}:{column}: {e}"))?;
            if sources
                .configured
                .insert(slug.into_string(), Arc::new(settings))
                .is_some()
            {
                return Err(format!("{line}:{column}: source {name:?} is defined twice"));
            }
        }
        Ok(sources)
    }

    /// The settings for `slug`: its own if configured, the defaults otherwise.
    pub fn settings(&self, slug: &SourceName) -> Arc<SourceSettings> {
        self.configured
            .get(slug.as_str())
            .unwrap_or(&self.unconfigured)
            .clone()
    }

    /// The names of the configured sources, sorted.
    pub fn configured_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.configured.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }
}

fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    source: Vec<SourceEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceEntry {
    name: Spanned<String>,
    scheme: Option<Spanned<String>>,
    #[serde(default)]
    secrets: Vec<Spanned<String>>,
    #[serde(default = "default_tolerance")]
    tolerance_secs: u64,
    #[serde(default)]
    enforce: bool,
    response: Option<Spanned<ResponseEntry>>,
    // The custom `hmac-sha256` scheme's settings.
    header: Option<String>,
    prefix: Option<String>,
    encoding: Option<Spanned<String>>,
    signed: Option<Spanned<String>>,
    timestamp_header: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResponseEntry {
    #[serde(default = "default_status")]
    status: u16,
    #[serde(default)]
    body: String,
    #[serde(default)]
    delay_ms: u64,
}

fn default_tolerance() -> u64 {
    300
}

fn default_status() -> u16 {
    200
}

type Spanned_<T> = Result<T, (std::ops::Range<usize>, String)>;

impl SourceEntry {
    fn into_settings(self) -> Spanned_<SourceSettings> {
        let scheme = self.parse_scheme()?;
        let secrets = self
            .secrets
            .iter()
            .map(|s| SigningSecret::parse(&scheme, s.get_ref()).map_err(|e| (s.span(), e)))
            .collect::<Result<Vec<_>, _>>()?;
        if self.enforce && (matches!(scheme, Scheme::None) || secrets.is_empty()) {
            return Err((
                self.name.span(),
                "enforce = true needs a scheme and at least one secret".into(),
            ));
        }
        let response = self.response.map(parse_response).transpose()?;
        Ok(SourceSettings {
            verifier: Verifier {
                scheme,
                secrets,
                tolerance_secs: self.tolerance_secs,
            },
            enforce: self.enforce,
            response,
        })
    }

    fn parse_scheme(&self) -> Spanned_<Scheme> {
        let Some(scheme) = &self.scheme else {
            return Ok(Scheme::None);
        };
        let name = match scheme.get_ref().as_str() {
            "keldairhr" => "standard-webhooks", // KeldairHR signs the Standard Webhooks way
            name => name,
        };
        let custom = match name {
            "hmac-sha256" => Some(self.parse_custom()?),
            _ => None,
        };
        Scheme::parse(name, custom).map_err(|e| (scheme.span(), e))
    }

    fn parse_custom(&self) -> Spanned_<CustomHmac> {
        let span = self.scheme.as_ref().map(Spanned::span).unwrap_or_default();
        let header = self.header.clone().ok_or_else(|| {
            (
                span.clone(),
                "scheme hmac-sha256 needs `header`, the signature header's name".to_owned(),
            )
        })?;
        let encoding = match &self.encoding {
            None => Encoding::Hex,
            Some(name) => Encoding::parse(name.get_ref()).map_err(|e| (name.span(), e))?,
        };
        let signed = match &self.signed {
            None => SignedPayload::parse("{body}").map_err(|e| (span.clone(), e))?,
            Some(template) => {
                SignedPayload::parse(template.get_ref()).map_err(|e| (template.span(), e))?
            }
        };
        let custom = CustomHmac {
            header: header.to_ascii_lowercase(),
            prefix: self.prefix.clone().unwrap_or_default(),
            encoding,
            signed,
            timestamp_header: self
                .timestamp_header
                .as_ref()
                .map(|h| h.to_ascii_lowercase()),
        };
        if custom.signed.uses_timestamp() && custom.timestamp_header.is_none() {
            return Err((
                span,
                "a `signed` template with {timestamp} needs `timestamp_header`".into(),
            ));
        }
        Ok(custom)
    }
}

fn parse_response(entry: Spanned<ResponseEntry>) -> Spanned_<CustomResponse> {
    let span = entry.span();
    let entry = entry.into_inner();
    let status = axum::http::StatusCode::from_u16(entry.status)
        .ok()
        .filter(|s| (100..=599).contains(&s.as_u16()))
        .ok_or_else(|| {
            (
                span.clone(),
                format!("response status {} is not an HTTP status", entry.status),
            )
        })?;
    if entry.delay_ms > 60_000 {
        return Err((span, "response delay_ms may be at most 60000".into()));
    }
    Ok(CustomResponse {
        status,
        body: entry.body,
        delay_ms: entry.delay_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[source]]
name = "keldair"
scheme = "standard-webhooks"
secrets = ["whsec_AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="]
enforce = true
response = { status = 202, body = "ok", delay_ms = 5 }

[[source]]
name = "custom"
scheme = "hmac-sha256"
header = "X-Signature"
prefix = "sha256="
encoding = "base64"
signed = "{timestamp}.{body}"
timestamp_header = "X-Timestamp"
secrets = ["abc"]
"#;

    #[test]
    fn a_good_file_configures_each_source() {
        let sources = Sources::parse(GOOD).unwrap();
        assert_eq!(sources.configured_names(), ["custom", "keldair"]);
        let keldair = sources.settings(&SourceName::parse("keldair").unwrap());
        assert!(keldair.enforce);
        assert_eq!(keldair.response.as_ref().unwrap().status.as_u16(), 202);
        let other = sources.settings(&SourceName::parse("other").unwrap());
        assert!(!other.enforce && other.verifier.secrets.is_empty());
    }

    #[test]
    fn errors_name_the_line() {
        let bad_scheme = "[[source]]\nname = \"a\"\nscheme = \"rot13\"\n";
        let err = Sources::parse(bad_scheme).unwrap_err();
        assert!(
            err.starts_with("3:10: unknown signature scheme \"rot13\""),
            "{err}"
        );
        let bad_toml = "[[source]]\nname = \"a\"\nsecrets = [\n";
        let err = Sources::parse(bad_toml).unwrap_err();
        assert!(err.starts_with("4:1: "), "{err}");
        let unknown_key = "[[source]]\nname = \"a\"\nsecret = \"x\"\n";
        let err = Sources::parse(unknown_key).unwrap_err();
        assert!(err.starts_with("3:1: unknown field `secret`"), "{err}");
        let bad_name = "[[source]]\nname = \"a b\"\n";
        assert!(
            Sources::parse(bad_name)
                .unwrap_err()
                .starts_with("2:8: source name")
        );
        let enforce_unsigned = "[[source]]\nname = \"a\"\nenforce = true\n";
        assert!(
            Sources::parse(enforce_unsigned)
                .unwrap_err()
                .contains("enforce")
        );
    }

    #[test]
    fn slugs_reject_unsafe_names() {
        assert!(SourceName::parse("keldair-prod_2.eu").is_ok());
        for bad in ["", "a/b", "a b", "é", &"x".repeat(65)] {
            assert!(SourceName::parse(bad).is_err(), "{bad:?}");
        }
    }
}
