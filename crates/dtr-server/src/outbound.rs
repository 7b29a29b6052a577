//! Outbound HTTP to URLs that clients chose (callback endpoints, later
//! `jwks_uri`), made safe against server-side request forgery (DTR-28):
//! only https (loopback http in `dev_mode`), no userinfo or fragment,
//! every resolved address checked, the connection pinned to a checked
//! address so DNS rebinding cannot redirect it, no redirects followed,
//! bounded connect and read times, bounded response bodies.

use async_trait::async_trait;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

mod addresses;

pub use addresses::{is_public, special_block};

/// Name resolution, injectable so tests control what a host resolves to.
#[async_trait]
pub trait Resolver: Send + Sync + 'static {
    /// The addresses of `host`.
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>>;
}

/// The system resolver.
#[derive(Debug, Default)]
pub struct SystemResolver;

#[async_trait]
impl Resolver for SystemResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        Ok(tokio::net::lookup_host((host, port)).await?.collect())
    }
}

/// A resolver with fixed answers (tests).
#[derive(Debug, Default)]
pub struct StaticResolver(pub std::sync::Mutex<std::collections::HashMap<String, Vec<IpAddr>>>);

impl StaticResolver {
    /// Sets the answer for a host.
    pub fn set(&self, host: &str, ips: Vec<IpAddr>) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(host.to_owned(), ips);
        }
    }
}

#[async_trait]
impl Resolver for StaticResolver {
    async fn resolve(&self, host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
        let m = self
            .0
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        match m.get(host) {
            Some(ips) => Ok(ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect()),
            None => Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "unknown host",
            )),
        }
    }
}

/// Why a URL or a delivery was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    /// The URL itself is unacceptable.
    #[error("{0}")]
    BadUrl(String),
    /// The host resolves to an address that must not be contacted.
    #[error("{0} resolves to a non-public address")]
    Forbidden(String),
    /// Resolution failed.
    #[error("cannot resolve {0}")]
    Unresolvable(String),
    /// Connecting, sending or reading failed or timed out.
    #[error("network error: {0}")]
    Network(String),
}

/// Settings of the outbound client.
#[derive(Clone)]
pub struct OutboundConfig {
    /// Allows loopback http and loopback addresses (development, tests).
    pub dev_mode: bool,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Whole-request timeout (read included).
    pub timeout: Duration,
    /// Largest response body read.
    pub max_body: usize,
    /// Extra trusted root certificate (PEM), e.g. a test CA.
    pub extra_root_pem: Option<Vec<u8>>,
}

/// The SSRF-safe outbound client.
#[derive(Clone)]
pub struct SafeHttp {
    config: OutboundConfig,
    resolver: Arc<dyn Resolver>,
}

/// A checked target: the URL and the address to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The URL.
    pub url: url::Url,
    /// The pinned address.
    pub addr: SocketAddr,
}

impl SafeHttp {
    /// A client.
    pub fn new(config: OutboundConfig, resolver: Arc<dyn Resolver>) -> Self {
        Self { config, resolver }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        is_public(ip) || (self.config.dev_mode && ip.is_loopback())
    }

    /// Checks a URL's form (DTR-25); see [`check_form`].
    pub fn check_form(&self, raw: &str) -> Result<url::Url, OutboundError> {
        check_form(raw, self.config.dev_mode)
    }

    /// Resolves and checks every address; returns the one to pin. All
    /// addresses must pass, so an attacker cannot mix a public and a
    /// private answer and hope for the private one.
    pub async fn resolve_checked(&self, url: &url::Url) -> Result<Target, OutboundError> {
        let port = url.port_or_known_default().unwrap_or(443);
        let host = url.host_str().unwrap_or_default().to_owned();
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(url::Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(url::Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            _ => self
                .resolver
                .resolve(&host, port)
                .await
                .map_err(|_| OutboundError::Unresolvable(host.clone()))?,
        };
        if addrs.is_empty() {
            return Err(OutboundError::Unresolvable(host));
        }
        if let Some(bad) = addrs.iter().find(|a| !self.allowed(a.ip())) {
            tracing::warn!(host = %host, addr = %bad.ip(), "outbound request refused: non-public address");
            return Err(OutboundError::Forbidden(host));
        }
        Ok(Target {
            url: url.clone(),
            addr: addrs[0],
        })
    }

    /// Validates a client-chosen URL at registration: form and resolution.
    pub async fn validate(&self, raw: &str) -> Result<url::Url, OutboundError> {
        let url = self.check_form(raw)?;
        self.resolve_checked(&url).await?;
        Ok(url)
    }

    fn client_for(&self, target: &Target) -> Result<reqwest::Client, OutboundError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(self.config.connect_timeout)
            .timeout(self.config.timeout)
            .no_proxy()
            .user_agent(concat!("dtr/", env!("CARGO_PKG_VERSION")));
        if let Some(host) = target
            .url
            .host_str()
            .filter(|_| matches!(target.url.host(), Some(url::Host::Domain(_))))
        {
            // Pin: connect to the address we checked, whatever DNS says now.
            b = b.resolve(host, target.addr);
        }
        if let Some(pem) = &self.config.extra_root_pem {
            let cert = reqwest::Certificate::from_pem(pem)
                .map_err(|e| OutboundError::Network(e.to_string()))?;
            b = b.add_root_certificate(cert);
        }
        b.build().map_err(|e| OutboundError::Network(e.to_string()))
    }

    /// POSTs a JSON body, re-checking the URL first (DTR-28). Returns the
    /// status; the body is read up to the cap and dropped.
    pub async fn post_json(
        &self,
        raw: &str,
        body: &serde_json::Value,
        bearer: Option<&str>,
    ) -> Result<u16, OutboundError> {
        self.post(raw, |req| {
            let req = req.json(body);
            match bearer {
                Some(t) => req.bearer_auth(t),
                None => req,
            }
        })
        .await
    }

    /// POSTs a JSON body given as its exact bytes (so a signature over
    /// them holds) with extra headers, under the same rules as
    /// [`SafeHttp::post_json`].
    pub async fn post_json_bytes(
        &self,
        raw: &str,
        body: Vec<u8>,
        headers: &[(&str, String)],
    ) -> Result<u16, OutboundError> {
        self.post(raw, |req| {
            let mut req = req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body);
            for (name, value) in headers {
                req = req.header(*name, value.as_str());
            }
            req
        })
        .await
    }

    /// One checked, pinned POST built by `build`; the response body is
    /// read up to the cap and dropped.
    async fn post(
        &self,
        raw: &str,
        build: impl FnOnce(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> Result<u16, OutboundError> {
        let url = self.check_form(raw)?;
        let target = self.resolve_checked(&url).await?;
        let client = self.client_for(&target)?;
        let req = build(client.post(target.url.clone()));
        let mut resp = req
            .send()
            .await
            .map_err(|e| OutboundError::Network(without_url(e)))?;
        let status = resp.status().as_u16();
        let mut read = 0usize;
        while let Ok(Some(chunk)) = resp.chunk().await {
            read += chunk.len();
            if read > self.config.max_body {
                break;
            }
        }
        Ok(status)
    }
}

impl SafeHttp {
    /// GETs a JSON document (a client's `jwks_uri`) under the same rules
    /// as callbacks: re-checked, pinned, no redirects, bounded time and size.
    pub async fn get_json(&self, raw: &str) -> Result<serde_json::Value, OutboundError> {
        let url = self.check_form(raw)?;
        let target = self.resolve_checked(&url).await?;
        let client = self.client_for(&target)?;
        let mut resp = client
            .get(target.url.clone())
            .send()
            .await
            .map_err(|e| OutboundError::Network(without_url(e)))?;
        if resp.status().as_u16() != 200 {
            return Err(OutboundError::Network(format!(
                "HTTP {}",
                resp.status().as_u16()
            )));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| OutboundError::Network(without_url(e)))?
        {
            if body.len() + chunk.len() > self.config.max_body {
                return Err(OutboundError::Network("response too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body)
            .map_err(|_| OutboundError::Network("response is not JSON".into()))
    }
}

/// The answer to a [`SafeHttp::call_json`]: status, `Retry-After` in
/// seconds when it was given as such (RFC 9110 section 10.2.3), the
/// `Content-Type`, and the body parsed as JSON when it is JSON.
#[derive(Clone, Debug, PartialEq)]
pub struct JsonAnswer {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After` (delta-seconds form only).
    pub retry_after: Option<u64>,
    /// The body as JSON; `None` when empty or not JSON.
    pub body: Option<serde_json::Value>,
}

impl SafeHttp {
    /// One JSON call (`GET`, `POST`, `DELETE`) under the same rules as
    /// callbacks (re-checked, pinned, no redirects, bounded time and
    /// size), with a bearer credential and extra headers. Every status is
    /// an answer; only a failure to get one is an error. Used for the
    /// AuthZEN PDP and ARAP services ([`crate::authzen`]).
    pub async fn call_json(
        &self,
        method: reqwest::Method,
        raw: &str,
        body: Option<&serde_json::Value>,
        bearer: Option<&str>,
        headers: &[(&str, String)],
    ) -> Result<JsonAnswer, OutboundError> {
        let url = self.check_form(raw)?;
        let target = self.resolve_checked(&url).await?;
        let client = self.client_for(&target)?;
        let mut req = client
            .request(method, target.url.clone())
            .header(reqwest::header::ACCEPT, "application/json");
        if let Some(b) = body {
            req = req.json(b);
        }
        if let Some(t) = bearer {
            req = req.bearer_auth(t);
        }
        for (name, value) in headers {
            req = req.header(*name, value.as_str());
        }
        let mut resp = req
            .send()
            .await
            .map_err(|e| OutboundError::Network(without_url(e)))?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok());
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .map_err(|e| OutboundError::Network(without_url(e)))?
        {
            if bytes.len() + chunk.len() > self.config.max_body {
                return Err(OutboundError::Network("response too large".into()));
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(JsonAnswer {
            status,
            retry_after,
            body: serde_json::from_slice(&bytes).ok(),
        })
    }

    /// The same client with other timeouts (the PDP's own).
    pub fn with_timeouts(&self, connect: Duration, timeout: Duration) -> Self {
        let mut config = self.config.clone();
        config.connect_timeout = connect;
        config.timeout = timeout;
        Self {
            config,
            resolver: self.resolver.clone(),
        }
    }
}

/// Fetched `jwks_uri` documents, kept for a while so that private_key_jwt
/// does not fetch on every request; a key rotation is picked up when the
/// entry ages out, or at once when a signature names a kid we lack.
#[derive(Default)]
pub struct JwksCache {
    entries: std::sync::Mutex<
        std::collections::HashMap<String, (serde_json::Value, std::time::Instant)>,
    >,
}

impl std::fmt::Debug for JwksCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksCache").finish_non_exhaustive()
    }
}

/// How long a fetched key set is used.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// The least time between two fetches of one URL (a forced refresh too),
/// so that requests naming unknown kids cannot make us hammer the URL.
const JWKS_MIN_REFETCH: Duration = Duration::from_secs(30);

impl JwksCache {
    /// The key set at `url`; `refresh` asks for a new fetch (unknown kid),
    /// honoured at most every [`JWKS_MIN_REFETCH`].
    pub async fn get(
        &self,
        http: &SafeHttp,
        url: &str,
        refresh: bool,
    ) -> Result<serde_json::Value, OutboundError> {
        let cached = self.entries.lock().ok().and_then(|m| m.get(url).cloned());
        if let Some((v, at)) = &cached {
            let fresh = at.elapsed() < JWKS_TTL && !(refresh && at.elapsed() >= JWKS_MIN_REFETCH);
            if fresh {
                return Ok(v.clone());
            }
        }
        let v = http.get_json(url).await?;
        if !v.get("keys").is_some_and(serde_json::Value::is_array) {
            return Err(OutboundError::Network(
                "jwks_uri did not return a key set".into(),
            ));
        }
        if let Ok(mut m) = self.entries.lock() {
            m.insert(url.to_owned(), (v.clone(), std::time::Instant::now()));
        }
        Ok(v)
    }
}

/// A reqwest error without the URL (which may carry a path the client
/// considers private; never a token, which is in the header).
fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect failed"
    } else {
        "request failed"
    };
    kind.to_owned()
}

/// Checks a client-chosen URL without resolving it: https, or http to
/// loopback in dev mode; no userinfo, no fragment; an IP-literal host must
/// be public (loopback allowed in dev mode).
pub fn check_form(raw: &str, dev_mode: bool) -> Result<url::Url, OutboundError> {
    let url = url::Url::parse(raw).map_err(|e| OutboundError::BadUrl(format!("not a URL: {e}")))?;
    if url.fragment().is_some() {
        return Err(OutboundError::BadUrl("must not contain a fragment".into()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OutboundError::BadUrl(
            "must not contain user information".into(),
        ));
    }
    let host = url
        .host_str()
        .ok_or_else(|| OutboundError::BadUrl("needs a host".into()))?
        .to_owned();
    match url.scheme() {
        "https" => {}
        "http" if dev_mode && is_loopback_name(&host) => {}
        "http" => {
            return Err(OutboundError::BadUrl(
                "must use https (loopback http only in dev_mode)".into(),
            ))
        }
        s => return Err(OutboundError::BadUrl(format!("scheme {s} is not allowed"))),
    }
    let literal = match url.host() {
        Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal {
        if !(is_public(ip) || (dev_mode && ip.is_loopback())) {
            return Err(OutboundError::Forbidden(host));
        }
    }
    Ok(url)
}

fn is_loopback_name(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost") || h.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn non_public_addresses() {
        for s in [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "192.0.0.8",
            "192.0.2.1",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "240.0.0.1",
            "::",
            "::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:a00:1::1",
            "2001::1",
            "100::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    #[test]
    fn public_addresses() {
        for s in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    /// IPv6 forms that carry an IPv4 address are refused even when that
    /// address is public: these two once passed with a private one.
    #[test]
    fn embedded_ipv4_forms_are_refused() {
        for s in [
            "::ffff:0:a00:1",
            "::ffff:0:7f00:1",
            "::ffff:0:808:808",
            "64:ff9b:1::a00:1",
            "64:ff9b:1::808:808",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(!is_public(ip(s)), "{s} must be refused");
        }
    }

    fn http(dev_mode: bool, resolver: Arc<StaticResolver>) -> SafeHttp {
        SafeHttp::new(
            OutboundConfig {
                dev_mode,
                connect_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(1),
                max_body: 1024,
                extra_root_pem: None,
            },
            resolver,
        )
    }

    #[tokio::test]
    async fn registration_checks() {
        let r = Arc::new(StaticResolver::default());
        r.set("public.example", vec![ip("93.184.216.34")]);
        r.set("sneaky.example", vec![ip("127.0.0.1")]);
        r.set("mixed.example", vec![ip("93.184.216.34"), ip("10.0.0.1")]);
        let h = http(false, r.clone());
        assert!(h.validate("https://public.example/cb").await.is_ok());
        for bad in [
            "http://public.example/cb",
            "https://user:pw@public.example/cb",
            "https://public.example/cb#frag",
            "https://127.0.0.1/cb",
            "https://10.0.0.1/cb",
            "https://169.254.169.254/latest",
            "https://[::1]/cb",
            "https://[::ffff:127.0.0.1]/cb",
            "https://0.0.0.0/cb",
            "https://sneaky.example/cb",
            "https://mixed.example/cb",
            "https://nowhere.example/cb",
            "ftp://public.example/cb",
        ] {
            assert!(h.validate(bad).await.is_err(), "{bad} must be refused");
        }
        let dev = http(true, r);
        assert!(
            dev.validate("http://127.0.0.1:9/cb").await.is_ok(),
            "dev_mode allows loopback http"
        );
        assert!(
            dev.validate("http://10.0.0.1/cb").await.is_err(),
            "but not private networks"
        );
    }

    #[tokio::test]
    async fn rebinding_is_caught_at_delivery() {
        let r = Arc::new(StaticResolver::default());
        r.set("rebind.example", vec![ip("93.184.216.34")]);
        let h = http(false, r.clone());
        assert!(h.validate("https://rebind.example/cb").await.is_ok());
        r.set("rebind.example", vec![ip("10.1.2.3")]);
        let e = h
            .post_json("https://rebind.example/cb", &serde_json::json!({}), None)
            .await;
        assert_eq!(e, Err(OutboundError::Forbidden("rebind.example".into())));
    }
}
