//! Layered settings: the struct's defaults, then an optional file, then environment variables.
//!
//! Variables are `TASKSTREAM_<SECTION>__<FIELD>` (double underscore between levels), for example
//! `TASKSTREAM_HTTP__PORT=8081` or `TASKSTREAM_KAFKA__BROKERS=kafka:9092`. The file is named by
//! `TASKSTREAM_CONFIG` (TOML).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Loads `T` from its defaults, the optional `TASKSTREAM_CONFIG` file and the environment.
pub fn load<T: DeserializeOwned + Serialize + Default>() -> anyhow::Result<T> {
    let defaults = config::Config::try_from(&T::default())?;
    let mut builder = config::Config::builder().add_source(defaults);
    if let Ok(path) = std::env::var("TASKSTREAM_CONFIG") {
        builder = builder.add_source(config::File::with_name(&path).required(true));
    }
    let settings = builder
        .add_source(
            config::Environment::with_prefix("TASKSTREAM")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true),
        )
        .build()?;
    Ok(settings.try_deserialize()?)
}

/// Serializes a secret's value. Used only to seed the layered settings with the struct's
/// defaults (settings are never serialized for output).
pub fn serialize_secret<S: serde::Serializer>(
    secret: &secrecy::SecretString,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use secrecy::ExposeSecret;
    serializer.serialize_str(secret.expose_secret())
}

/// Where a service listens.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    pub host: IpAddr,
    /// 0 picks a free port (tests).
    pub port: u16,
}

impl HttpSettings {
    pub fn with_port(port: u16) -> Self {
        Self {
            host: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.host, self.port)
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self::with_port(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Example {
        http: HttpSettings,
        name: String,
    }

    #[test]
    fn defaults_load_without_a_file_or_variables() {
        let loaded: Example = load().expect("loads");
        assert_eq!(loaded.http.port, 0);
    }
}
