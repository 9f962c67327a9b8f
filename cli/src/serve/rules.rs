//! What a check requires: the per-path scope table (`--scopes-file`), the forwarded method and
//! URI a gateway sends, and the encoding of the key's name in a response header.

use std::fmt;
use std::path::Path;

/// One line of the scopes file: requests whose method is `method` (`None`: any) and whose
/// path is `prefix` or below it need every scope in `scopes`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    method: Option<String>,
    prefix: String,
    /// `prefix` case-folded, for the backends that route without regard to case.
    folded: String,
    scopes: Vec<String>,
}

/// The per-path table: the most specific rule (longest prefix, then a method rule before a
/// `*` one) that matches a request decides its scopes, for each reading of its path a backend
/// may route (see [`ScopeTable::lookup`]); a request no rule matches needs a valid key and no
/// scope.
#[derive(Debug, Clone, Default)]
pub struct ScopeTable {
    rules: Vec<Rule>,
}

/// A line of the scopes file that cannot be read, with its number.
#[derive(Debug)]
pub struct TableError {
    pub line: usize,
    pub message: String,
}

impl fmt::Display for TableError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl ScopeTable {
    /// Reads the table from a file (see [`ScopeTable::parse`]).
    pub fn load(path: &Path) -> Result<ScopeTable, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the scopes file {}: {e}", path.display()))?;
        ScopeTable::parse(&text)
            .map_err(|e| format!("the scopes file {} is not valid: {e}", path.display()))
    }

    /// One rule a line: `METHOD PATH-PREFIX [SCOPE...]`, fields separated by spaces or tabs;
    /// METHOD is an HTTP method or `*` for any; PATH-PREFIX starts with `/` and matches itself
    /// and every path below it (whole segments: `/v1/chat` matches `/v1/chat/x`, not
    /// `/v1/chatx`; a trailing `/` is ignored); no scope means a valid key is enough. Blank lines and lines starting
    /// with `#` are ignored. The same method and prefix twice is an error.
    pub fn parse(text: &str) -> Result<ScopeTable, TableError> {
        let mut rules: Vec<Rule> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line_no = n + 1;
            let err = |message: String| TableError {
                line: line_no,
                message,
            };
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let mut fields = line.split_ascii_whitespace();
            let (Some(method), Some(prefix)) = (fields.next(), fields.next()) else {
                return Err(err(
                    "expected `METHOD PATH-PREFIX [SCOPE...]`, e.g. `POST /v1/chat chat:write`"
                        .to_owned(),
                ));
            };
            let method = if method == "*" {
                None
            } else if !method.is_empty() && method.bytes().all(|b| b.is_ascii_alphabetic()) {
                Some(method.to_ascii_uppercase())
            } else {
                return Err(err(format!(
                    "`{}` is not an HTTP method or `*`",
                    method.escape_debug()
                )));
            };
            // `/v1/admin/` is the prefix `/v1/admin`: it covers `/v1/admin` itself, which most
            // routers serve as the same resource.
            let prefix = match normalize_path(prefix) {
                Ok(p) if p.len() > 1 && p.ends_with('/') => p[..p.len() - 1].to_owned(),
                Ok(p) => p,
                Err(why) => {
                    return Err(err(format!(
                        "the path prefix `{}` {why}",
                        prefix.escape_debug()
                    )))
                }
            };
            let scopes: Vec<String> = fields.map(str::to_owned).collect();
            if rules
                .iter()
                .any(|r| r.method == method && r.prefix == prefix)
            {
                return Err(err(format!(
                    "a rule for {} {prefix} is given twice",
                    method.as_deref().unwrap_or("*")
                )));
            }
            rules.push(Rule {
                method,
                folded: prefix.to_lowercase(),
                prefix,
                scopes,
            });
        }
        Ok(ScopeTable { rules })
    }

    /// Whether the table has no rule (then no forwarded path is read at all).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every scope the table names, to check them once at start.
    pub fn all_scopes(&self) -> impl Iterator<Item = &str> {
        self.rules
            .iter()
            .flat_map(|r| r.scopes.iter().map(String::as_str))
    }

    /// The scopes a request needs; `path` has gone through [`normalize_path`].
    ///
    /// Backends do not all route a path the same way: some fold case (Express, ASP.NET), some
    /// drop `;params` from a segment (servlet containers) or trailing dots and read `\` as `/`
    /// (IIS), and most
    /// answer HEAD with the GET handler. The path is looked up as written and in each of those
    /// readings, and the request needs the scopes of every rule so found: another spelling of
    /// a path can only need more, never less.
    pub fn lookup(&self, method: &str, path: &str) -> Vec<String> {
        let lenient = strip_segment_suffixes(path);
        let mut scopes: Vec<String> = Vec::new();
        for candidate in [path, lenient.as_str()] {
            for fold in [false, true] {
                if let Some(rule) = self.best(method, candidate, fold) {
                    scopes.extend(rule.scopes.iter().cloned());
                }
            }
        }
        scopes.sort_unstable();
        scopes.dedup();
        scopes
    }

    /// The most specific rule for one reading of a request: the longest prefix, then a rule
    /// for the method, then a GET rule for a HEAD request, then `*`.
    fn best(&self, method: &str, path: &str, fold: bool) -> Option<&Rule> {
        let folded;
        let path = if fold {
            folded = path.to_lowercase();
            folded.as_str()
        } else {
            path
        };
        let mut best: Option<(&Rule, u8)> = None;
        for rule in &self.rules {
            let rank = match &rule.method {
                None => 0,
                Some(m) if m.eq_ignore_ascii_case(method) => 2,
                Some(m) if m == "GET" && method.eq_ignore_ascii_case("HEAD") => 1,
                Some(_) => continue,
            };
            let matched = if fold {
                prefix_matches(&rule.folded, path)
            } else {
                prefix_matches(&rule.prefix, path)
            };
            if !matched {
                continue;
            }
            let better = match best {
                None => true,
                Some((b, b_rank)) => {
                    rule.prefix.len() > b.prefix.len()
                        || (rule.prefix.len() == b.prefix.len() && rank > b_rank)
                }
            };
            if better {
                best = Some((rule, rank));
            }
        }
        best.map(|(rule, _)| rule)
    }
}

fn prefix_matches(prefix: &str, path: &str) -> bool {
    if prefix == "/" {
        return true;
    }
    match path.strip_prefix(prefix) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// A normalized path with `\` read as `/` and each segment's `;params` and trailing dots cut
/// off, as a servlet container or IIS would route it (`/v1\admin;x/a./b` is
/// `/v1/admin/a/b`).
fn strip_segment_suffixes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for segment in path.split(['/', '\\']) {
        let segment = segment.split(';').next().unwrap_or("");
        let segment = segment.trim_end_matches('.');
        if !segment.is_empty() {
            out.push('/');
            out.push_str(segment);
        }
    }
    if out.is_empty() || path.ends_with('/') {
        out.push('/');
    }
    out
}

/// The path of a request URI as the table sees it: the query cut off,
/// percent-escapes decoded, repeated slashes collapsed. Refused (so that no spelling of a path
/// escapes the rule written for it): a path that does not start with `/`, a raw `#`, bad or NUL
/// escapes, doubly encoded escapes (`%252e`), text that is not UTF-8, control characters,
/// and `.` or `..` segments (a gateway
/// that normalizes would not forward them; one that does not would route them elsewhere).
pub fn normalize_path(uri: &str) -> Result<String, &'static str> {
    let path = uri.split('?').next().unwrap_or("");
    if !path.starts_with('/') {
        return Err("does not start with `/`");
    }
    // A request target has no fragment: a raw `#` is not one a backend would cut off.
    if path.contains('#') {
        return Err("has a raw `#`");
    }
    let bytes = path.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = |b: u8| (b as char).to_digit(16);
            let (Some(hi), Some(lo)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err("has a bad percent-escape");
            };
            decoded.push((hi * 16 + lo) as u8);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| "is not UTF-8 once decoded")?;
    if text.chars().any(char::is_control) {
        return Err("has a control character");
    }
    // `%252e` is `%2e` once decoded: a backend that decodes again would see another path.
    let t = text.as_bytes();
    if (0..t.len().saturating_sub(2))
        .any(|i| t[i] == b'%' && t[i + 1].is_ascii_hexdigit() && t[i + 2].is_ascii_hexdigit())
    {
        return Err("has a doubly encoded percent-escape");
    }
    let mut out = String::with_capacity(text.len());
    // A `\` is a `/` to IIS and Windows-hosted servers: no `.` or `..` between those either.
    if text.split(['/', '\\']).any(|s| s == "." || s == "..") {
        return Err("has a `.` or `..` segment");
    }
    for segment in text.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        out.push_str(segment);
    }
    if out.is_empty() || (text.ends_with('/') && text.len() > 1) {
        out.push('/');
    }
    Ok(out)
}

/// A key's name as the `X-Keystead-Key-Name` header value: its UTF-8 bytes percent-encoded
/// (RFC 3986), every byte except the unreserved `A-Z a-z 0-9 - . _ ~` written as `%XX`, so
/// the value is plain ASCII whatever the name holds and decodes with any URL decoder
/// (`urllib.parse.unquote`, `decodeURIComponent`, `url.PathUnescape`).
pub fn encode_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_prefix_decides_and_a_method_rule_beats_star() {
        let table = ScopeTable::parse(
            "# comment\n\n* / base\n* /v1/chat chat:read\nPOST /v1/chat chat:write\n\
             get /v1/open\n",
        )
        .unwrap();
        assert_eq!(table.lookup("POST", "/v1/chat/completions"), ["chat:write"]);
        assert_eq!(table.lookup("GET", "/v1/chat"), ["chat:read"]);
        assert_eq!(table.lookup("GET", "/v1/chatx"), ["base"]);
        assert!(table.lookup("GET", "/v1/open/x").is_empty());
        assert_eq!(table.lookup("POST", "/v1/open"), ["base"]);
        assert!(ScopeTable::default().lookup("GET", "/x").is_empty());
    }

    #[test]
    fn bad_lines_are_refused_with_their_number() {
        for (text, line) in [
            ("* /a x\nPOST\n", 2),
            ("P0ST /a x\n", 1),
            ("* a x\n", 1),
            ("* /a x\n* //a y\n", 2),
            ("* /a x\n* /a/ y\n", 2),
            ("* /a/../b x\n", 1),
        ] {
            let e = ScopeTable::parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
        }
    }

    #[test]
    fn paths_are_normalized_or_refused() {
        assert_eq!(normalize_path("/v1//chat?x=1").unwrap(), "/v1/chat");
        assert_eq!(normalize_path("/v1/%63hat/").unwrap(), "/v1/chat/");
        assert_eq!(normalize_path("/").unwrap(), "/");
        for bad in [
            "v1",
            "/a/../b",
            "/a/%2e%2e/b",
            "/%zz",
            "/%00",
            "/%ff",
            "/a/./b",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
    }

    // A backend (or a proxy in front of it) that decodes once more than keystead turns
    // `%252e%252e` into `..`: `/v1/public/%252e%252e/admin` is `/v1/admin` to it, while the
    // table would match it by the `/v1/public` rule. Refused, like a `..` segment.
    #[test]
    fn a_doubly_encoded_escape_is_refused() {
        for bad in [
            "/v1/public/%252e%252e/admin",
            "/v1/public%252F..%252Fadmin",
            "/v1/%2561dmin",
        ] {
            assert!(normalize_path(bad).is_err(), "{bad}");
        }
        assert_eq!(normalize_path("/files/100%25").unwrap(), "/files/100%");
    }

    // A request target has no fragment (RFC 9112 §3.2); a `#` forwarded raw (nginx's
    // $request_uri passes the client's bytes) hid whatever follows it from the table, while a
    // backend that takes it as part of the path routes by the rest.
    #[test]
    fn a_raw_fragment_in_a_forwarded_uri_is_refused() {
        assert!(normalize_path("/v1/public#/../chat").is_err());
        assert!(normalize_path("/v1/public?q=#x").is_ok());
        assert_eq!(normalize_path("/v1/a%23b").unwrap(), "/v1/a#b");
    }

    // Express (and ASP.NET, IIS) route `/V1/ADMIN` to the `/v1/admin` handler by default: the
    // rule written for it must cover that spelling too.
    #[test]
    fn a_rule_covers_the_paths_other_case() {
        let table = ScopeTable::parse("* /v1/admin admin\n").unwrap();
        assert_eq!(table.lookup("GET", "/V1/Admin/users"), ["admin"]);
    }

    // `/admin/` as a prefix: `/admin` is the same resource for most routers (Express,
    // non-strict routing; a redirect elsewhere), so it must not need less.
    #[test]
    fn a_prefix_with_a_trailing_slash_covers_the_path_without_it() {
        let table = ScopeTable::parse("* /v1/admin/ admin\n").unwrap();
        assert_eq!(table.lookup("GET", "/v1/admin"), ["admin"]);
        assert_eq!(table.lookup("GET", "/v1/admin/x"), ["admin"]);
    }

    // Servlet containers (Tomcat, Jetty) drop `;params` from a segment before routing, and
    // Windows/IIS drops trailing dots: `/v1/admin;x/users` is `/v1/admin/users` to them.
    #[test]
    fn path_parameters_and_trailing_dots_do_not_escape_a_rule() {
        let table = ScopeTable::parse("* /v1/admin admin\n").unwrap();
        assert_eq!(table.lookup("GET", "/v1/admin;x=1/users"), ["admin"]);
        assert_eq!(table.lookup("GET", "/v1;/admin"), ["admin"]);
        assert_eq!(table.lookup("GET", "/v1/admin./users"), ["admin"]);
    }

    // IIS and Windows-hosted servers take `\` for `/`: `/v1\admin` is `/v1/admin` to them.
    #[test]
    fn a_backslash_does_not_escape_a_rule() {
        let table = ScopeTable::parse("* /v1/admin admin\n").unwrap();
        let path = normalize_path("/v1%5Cadmin\\users").unwrap();
        assert_eq!(table.lookup("GET", &path), ["admin"]);
        assert!(normalize_path("/v1/public\\..\\admin").is_err());
        assert!(normalize_path("/v1/public%5C..%5Cadmin").is_err());
    }

    // HEAD is GET without the body (RFC 9110 §9.3.2), and frameworks answer it with the GET
    // handler: a GET rule must cover it.
    #[test]
    fn a_get_rule_covers_head() {
        let table = ScopeTable::parse("GET /v1/admin admin\n* /v1 base\n").unwrap();
        assert_eq!(table.lookup("HEAD", "/v1/admin"), ["admin"]);
        assert_eq!(table.lookup("HEAD", "/v1/other"), ["base"]);
        assert_eq!(table.lookup("GET", "/v1/admin"), ["admin"]);
    }

    #[test]
    fn names_are_percent_encoded_ascii() {
        assert_eq!(encode_name("dev-server_1.x~"), "dev-server_1.x~");
        assert_eq!(encode_name("Prüfung ✓"), "Pr%C3%BCfung%20%E2%9C%93");
        assert_eq!(encode_name("a%b\r\n"), "a%25b%0D%0A");
    }
}
