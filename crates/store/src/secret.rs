//! Keeping the store password out of logs, error messages and printed configuration.
//!
//! A password reaches the store either inside `store.url` (percent-encoded, as URLs want) or
//! from `store.password-file`, which keeps it out of every URL string: it is read at connect
//! and set on the parsed connect options only. Everything shown to a person goes through
//! [`redact_url`], which errs on the side of hiding too much: a URL that does not parse
//! cleanly loses everything between `://` and its last `@`.

use std::path::{Path, PathBuf};

use url::Url;

use crate::backend::Backend;
use crate::error::StoreError;

/// What a redacted secret is shown as.
const REDACTED: &str = "***";

/// `url` with its password replaced by `***`: the password of the authority and the value of
/// every secret-looking query parameter (`password`, `sslpassword`, …). When the URL does not
/// parse, or has an `@` past its host (a password with an unencoded `/`, `?` or `#` is split
/// there), everything between `://` and the last `@` is replaced instead. A URL with no `@`
/// has no password in its authority and is shown as is, query parameters aside.
pub fn redact_url(url: &str) -> String {
    match Url::parse(url) {
        Ok(parsed) if parses_cleanly(url, &parsed) => redact_parsed(url, parsed),
        _ => redact_unparsed(url),
    }
}

/// Whether the parser saw the URL as its author meant it: with an authority (`scheme://`),
/// and no `@` past it.
fn parses_cleanly(url: &str, parsed: &Url) -> bool {
    !parsed.cannot_be_a_base() && url.contains("://") && !has_at_past_authority(url)
}

/// Whether an `@` appears after the end of the authority: the sign of a password holding a
/// reserved character, whose tail then sits in the path, query or fragment.
fn has_at_past_authority(url: &str) -> bool {
    let Some(scheme_end) = url.find("://") else { return false };
    let rest = &url[scheme_end + 3..];
    let authority_len = rest.find(['/', '?', '#', '\\']).unwrap_or(rest.len());
    rest[authority_len..].contains('@')
}

fn redact_parsed(original: &str, mut parsed: Url) -> String {
    let mut changed = false;
    if parsed.password().is_some() {
        // Only fails for URLs without a host, which cannot carry a password.
        let _ = parsed.set_password(Some(REDACTED));
        changed = true;
    }
    if let Some(query) = parsed.query().map(str::to_owned) {
        let redacted = redact_query(&query);
        if redacted != query {
            parsed.set_query(Some(&redacted));
            changed = true;
        }
    }
    // Unchanged URLs are shown exactly as written, not as the parser would normalize them.
    if changed { parsed.to_string() } else { original.to_owned() }
}

fn redact_unparsed(url: &str) -> String {
    let start = url.find("://").map(|at| at + 3).or_else(|| url.find(':').map(|at| at + 1)).unwrap_or(0);
    let mut redacted = match url[start..].rfind('@') {
        Some(at) => format!("{}{REDACTED}{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    };
    if let Some(query_start) = redacted.find('?') {
        let query = redact_query(&redacted[query_start + 1..]);
        redacted.replace_range(query_start + 1.., &query);
    }
    redacted
}

/// `query` with the value of each secret-looking parameter replaced; the rest as written.
fn redact_query(query: &str) -> String {
    let pairs: Vec<String> = query
        .split('&')
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if is_secret_key(&decoded_key(key)) => format!("{key}={REDACTED}"),
            _ => pair.to_owned(),
        })
        .collect();
    pairs.join("&")
}

/// A query key with its percent-encoding undone (`pass%77ord` is `password`).
fn decoded_key(key: &str) -> String {
    url::form_urlencoded::parse(key.as_bytes()).next().map_or_else(String::new, |(key, _)| key.into_owned())
}

/// Whether a query parameter's value is to be treated as a secret.
fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token"].iter().any(|word| key.contains(word))
}

/// Refuses a server URL that would send part of a password somewhere it gets echoed: an
/// `@` past the host (the password's tail would become the database name, which servers
/// quote in their errors), or a secret-looking parameter the driver does not take as the
/// password (the PostgreSQL driver logs unknown parameters with their values).
pub(crate) fn check_server_url(url: &str, backend: Backend) -> Result<(), StoreError> {
    if backend == Backend::Sqlite {
        return Ok(());
    }
    if has_at_past_authority(url) {
        return Err(StoreError::InvalidUrl(format!(
            "{}: a `/`, `?` or `#` before the last `@` ends the host early: percent-encode the password's \
             reserved characters (`/` as %2F, `?` as %3F, `#` as %23, `@` as %40, `%` as %25), or put it in \
             store.password-file",
            redact_url(url)
        )));
    }
    if let Some(query) = url.split_once('?').map(|(_, query)| query) {
        for (key, _) in url::form_urlencoded::parse(query.as_bytes()) {
            let taken_as_password = backend == Backend::Postgres && key == "password";
            if is_secret_key(&key) && !taken_as_password {
                return Err(StoreError::InvalidUrl(format!(
                    "{}: the `{key}` parameter is not one the {} driver takes; remove it \
                     (a password belongs in the URL's user part or in store.password-file)",
                    redact_url(url),
                    backend.as_str()
                )));
            }
        }
    }
    Ok(())
}

/// Why `store.password-file` cannot be used with `url`, if it cannot: SQLite has no password,
/// and a URL that has one already would leave two passwords to choose from.
pub fn password_file_conflict(url: &str) -> Option<String> {
    match Backend::of_url(url) {
        Some(Backend::Sqlite) => return Some("SQLite takes no password: remove store.password-file".to_owned()),
        None => return None,
        Some(_) => {}
    }
    let in_authority = match Url::parse(url) {
        Ok(parsed) if parses_cleanly(url, &parsed) => parsed.password().is_some(),
        // Judged on the raw text: any `:` before the last `@` may start a password.
        _ => {
            let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
            rest.rfind('@').is_some_and(|at| rest[..at].contains(':'))
        }
    };
    let in_query = url.split_once('?').is_some_and(|(_, query)| {
        url::form_urlencoded::parse(query.as_bytes()).any(|(key, _)| key.eq_ignore_ascii_case("password"))
    });
    (in_authority || in_query).then(|| {
        "store.url has a password too: remove the password from store.url, or unset store.password-file".to_owned()
    })
}

/// The password in `path`, without its trailing line break. Errors name the file, never
/// what it holds.
pub(crate) fn read_password_file(path: &Path) -> Result<String, StoreError> {
    let failed = |reason: String| StoreError::PasswordFile { path: path.to_owned(), reason };
    let text = std::fs::read_to_string(path).map_err(|error| failed(error.to_string()))?;
    let password = text.trim_end_matches(['\n', '\r']);
    if password.is_empty() {
        return Err(failed("the file is empty".to_owned()));
    }
    Ok(password.to_owned())
}

/// Sets `password` on the parsed connect URL. The driver reads the password from this URL
/// object (sqlx's `Any` driver builds its PostgreSQL or MySQL options from it) and
/// percent-decodes it, so every byte but letters and digits is encoded here; the URL object
/// is never formatted or logged.
pub(crate) fn set_password(url: &mut Url, password: &str, path: &Path) -> Result<(), StoreError> {
    url.set_password(Some(&percent_encode_all(password))).map_err(|()| StoreError::PasswordFile {
        path: PathBuf::from(path),
        reason: "store.url names no host to send the password to".to_owned(),
    })
}

/// `text` with the password of `url` replaced by `***`, as the URL holds it and decoded:
/// the last line of defence for messages that come from the driver or the server.
pub(crate) fn scrub(text: &str, url: &Url) -> String {
    let Some(written) = url.password() else { return text.to_owned() };
    let mut scrubbed = text.to_owned();
    for form in [written.to_owned(), percent_decode(written)] {
        if !form.is_empty() {
            scrubbed = scrubbed.replace(&form, REDACTED);
        }
    }
    scrubbed
}

/// `text` with every byte but ASCII letters and digits percent-encoded.
fn percent_encode_all(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len() * 3);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// `text` with its `%XX` escapes decoded (invalid UTF-8 replaced).
fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map_or_else(String::new, |(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every character that has a meaning in a URL, plus a space and non-ASCII.
    const HARD: &str = "p/a?s#s@w:o%r&d=+ é€";

    /// `text` percent-encoded as a careful user would write it into a URL.
    fn encoded(text: &str) -> String {
        percent_encode_all(text)
    }

    fn assert_hidden(url: &str, password: &str) -> String {
        let redacted = redact_url(url);
        assert!(!redacted.contains(password), "{url} → {redacted}");
        assert!(!redacted.contains(&encoded(password)), "{url} → {redacted}");
        assert!(redacted.contains(REDACTED) || !url.contains('@'), "{url} → {redacted}");
        redacted
    }

    #[test]
    fn passwords_never_reach_the_logs() {
        assert_eq!(redact_url("postgres://user:secret@db:5432/x"), "postgres://user:***@db:5432/x");
        assert_eq!(redact_url("mysql://root:p%40ss@h/db?ssl-mode=required"), "mysql://root:***@h/db?ssl-mode=required");
        assert_eq!(redact_url("postgres://h/db?user=u&password=secret"), "postgres://h/db?user=u&password=***");
        assert_eq!(
            redact_url("postgres://h/db?sslpassword=secret&sslmode=require"),
            "postgres://h/db?sslpassword=***&sslmode=require"
        );
        assert_eq!(redact_url("postgres://h/db?pass%77ord=secret"), "postgres://h/db?pass%77ord=***");
        assert_eq!(redact_url("postgres://user@h/db"), "postgres://user@h/db");
        assert_eq!(redact_url("sqlite://data/x.db?mode=rwc"), "sqlite://data/x.db?mode=rwc");
        assert_eq!(redact_url("sqlite:///var/lib/leasehold data/x.db"), "sqlite:///var/lib/leasehold data/x.db");
    }

    #[test]
    fn a_percent_encoded_password_of_every_special_character_is_hidden() {
        let url = format!("postgres://leasehold:{}@db.internal:5432/leasehold?sslmode=require", encoded(HARD));
        let redacted = assert_hidden(&url, HARD);
        assert_eq!(redacted, "postgres://leasehold:***@db.internal:5432/leasehold?sslmode=require");
        for special in HARD.chars() {
            let password = format!("se{special}cret");
            let url = format!("mysql://root:{}@127.0.0.1:3306/db", encoded(&password));
            assert_eq!(assert_hidden(&url, &password), "mysql://root:***@127.0.0.1:3306/db");
        }
    }

    #[test]
    fn a_raw_password_of_every_special_character_is_hidden() {
        let url = format!("postgres://leasehold:{HARD}@db.internal:5432/leasehold");
        assert_eq!(assert_hidden(&url, HARD), "postgres://***@db.internal:5432/leasehold");
        for special in HARD.chars() {
            for password in [format!("se{special}cret"), format!("{special}secret"), format!("12{special}cret")] {
                let url = format!("postgres://leasehold:{password}@127.0.0.1:5432/db");
                let redacted = assert_hidden(&url, &password);
                assert!(!redacted.contains("cret"), "{url} → {redacted}");
                assert!(redacted.ends_with("@127.0.0.1:5432/db"), "{url} → {redacted}");
            }
        }
    }

    #[test]
    fn unparsable_urls_lose_everything_up_to_the_last_at() {
        // The report that started this: an invalid port, with the password shown.
        assert_eq!(redact_url("postgres://leasehold:se/cret@db:5432/x"), "postgres://***@db:5432/x");
        assert_eq!(redact_url("postgres://u:12?x@h/db"), "postgres://***@h/db");
        assert_eq!(redact_url("postgres://u:12#x@h/db"), "postgres://***@h/db");
        assert_eq!(redact_url("postgres://u:pw@h:notaport/db?password=x"), "postgres://***@h:notaport/db?password=***");
        assert_eq!(redact_url("redis:user:secret@host"), "redis:***@host");
        assert_eq!(redact_url("postgres:user:secret@host"), "postgres:***@host");
        assert_eq!(redact_url("not a url at all"), "not a url at all");
        assert_eq!(redact_url("postgres://h:notaport/db"), "postgres://h:notaport/db");
    }

    #[test]
    fn server_urls_that_would_echo_a_password_are_refused() {
        let error = check_server_url("postgres://u:12/secret@h/db", Backend::Postgres).unwrap_err().to_string();
        assert!(error.contains("percent-encode"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        let error = check_server_url("postgres://h/db?sslpassword=secret", Backend::Postgres).unwrap_err().to_string();
        assert!(error.contains("`sslpassword`"), "{error}");
        assert!(!error.contains("secret&") && !error.contains("=secret"), "{error}");
        assert!(check_server_url("mysql://h/db?password=secret", Backend::MySql).is_err());
        assert!(check_server_url("postgres://h/db?password=secret", Backend::Postgres).is_ok());
        assert!(check_server_url("postgres://u:p%2Fw@h/db?sslmode=require", Backend::Postgres).is_ok());
    }

    #[test]
    fn a_password_file_excludes_a_password_in_the_url_and_sqlite() {
        assert_eq!(password_file_conflict("postgres://u@h/db"), None);
        assert_eq!(password_file_conflict("mysql://u@h/db?ssl-mode=required"), None);
        for url in ["postgres://u:pw@h/db", "postgres://u@h/db?password=pw", "postgres://u:se/cret@h/db"] {
            let conflict = password_file_conflict(url).unwrap_or_else(|| panic!("{url} passed"));
            assert!(conflict.contains("remove the password from store.url"), "{conflict}");
        }
        assert!(password_file_conflict("sqlite://data/x.db").unwrap().contains("SQLite takes no password"));
    }

    #[test]
    fn a_password_set_on_the_options_reads_back_exactly() {
        let path = Path::new("password-file");
        let mut url = Url::parse("postgres://leasehold@127.0.0.1:5432/db").unwrap();
        let password = format!("{HARD}%41");
        set_password(&mut url, &password, path).unwrap();
        let stored = url.password().unwrap();
        let decoded = percent_decode(stored);
        assert_eq!(decoded, password);
        assert_eq!(url.host_str(), Some("127.0.0.1"));
        assert_eq!(url.path(), "/db");
    }

    #[test]
    fn driver_messages_are_scrubbed_of_the_password() {
        let message = format!("could not connect with {HARD} or {}", encoded(HARD));
        let mut url = Url::parse("postgres://leasehold@127.0.0.1:5432/db").unwrap();
        set_password(&mut url, HARD, Path::new("password-file")).unwrap();
        let scrubbed = scrub(&message, &url);
        assert!(!scrubbed.contains(HARD) && !scrubbed.contains(&encoded(HARD)), "{scrubbed}");
    }

    #[test]
    fn password_files_lose_their_line_break_and_never_show_their_content() {
        let dir = std::env::temp_dir().join(format!("leasehold-secret-test-{}", crate::new_incarnation()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, format!("{HARD}\r\n")).unwrap();
        assert_eq!(read_password_file(&file).unwrap(), HARD);
        std::fs::write(&file, "\n").unwrap();
        let error = read_password_file(&file).unwrap_err().to_string();
        assert!(error.contains("empty") && error.contains(&file.display().to_string()), "{error}");
        let missing = dir.join("missing");
        let error = read_password_file(&missing).unwrap_err().to_string();
        assert!(error.contains(&missing.display().to_string()), "{error}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
