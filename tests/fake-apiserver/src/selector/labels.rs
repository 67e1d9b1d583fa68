//! `labelSelector`: `a=b`, `a==b`, `a!=b`, `a in (b,c)`, `a notin (b)`,
//! `a`, `!a`, `a>1`, `a<1`, comma-separated, all required.

use serde_json::Value;

use crate::error::ApiError;

/// A parsed `labelSelector`: every requirement must hold.
#[derive(Debug, Clone, Default)]
pub struct LabelSelector {
    requirements: Vec<LabelRequirement>,
}

#[derive(Debug, Clone)]
struct LabelRequirement {
    key: String,
    op: LabelOp,
}

#[derive(Debug, Clone)]
enum LabelOp {
    Exists,
    DoesNotExist,
    Equals(String),
    NotEquals(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    GreaterThan(i64),
    LessThan(i64),
}

/// A token of the label selector grammar.
#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Comma,
    Open,
    Close,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Parses `a=b,c!=d,e in (f,g),!h,i`.
    pub fn parse(text: &str) -> Result<Self, ApiError> {
        let tokens = tokenize(text)?;
        let mut requirements = Vec::new();
        let mut pos = 0;
        while pos < tokens.len() {
            let (req, next) = parse_requirement(&tokens, pos)?;
            requirements.push(req);
            pos = next;
            match tokens.get(pos) {
                None => {}
                Some(Token::Comma) if pos + 1 < tokens.len() => pos += 1,
                Some(other) => {
                    return Err(selector_error(text, &format!("unexpected {other:?}")));
                }
            }
        }
        Ok(Self { requirements })
    }

    /// Whether there is no requirement (everything matches).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels").and_then(Value::as_object);
        let get = |key: &str| labels.and_then(|l| l.get(key)).and_then(Value::as_str);
        self.requirements.iter().all(|req| {
            let value = get(&req.key);
            match &req.op {
                LabelOp::Exists => value.is_some(),
                LabelOp::DoesNotExist => value.is_none(),
                LabelOp::Equals(v) => value == Some(v.as_str()),
                // `!=` and `notin` also match objects without the label.
                LabelOp::NotEquals(v) => value != Some(v.as_str()),
                LabelOp::In(set) => value.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::NotIn(set) => !value.is_some_and(|v| set.iter().any(|s| s == v)),
                LabelOp::GreaterThan(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v > *n),
                LabelOp::LessThan(n) => value
                    .and_then(|v| v.parse::<i64>().ok())
                    .is_some_and(|v| v < *n),
            }
        })
    }
}

fn selector_error(text: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why} in \"{text}\""))
}

fn tokenize(text: &str) -> Result<Vec<Token>, ApiError> {
    let mut tokens = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            ',' | '(' | ')' | '>' | '<' => {
                chars.next();
                tokens.push(match c {
                    ',' => Token::Comma,
                    '(' => Token::Open,
                    ')' => Token::Close,
                    '>' => Token::Greater,
                    _ => Token::Less,
                });
            }
            '=' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::DoubleEquals);
                } else {
                    tokens.push(Token::Equals);
                }
            }
            '!' => {
                chars.next();
                if chars.peek() == Some(&'=') {
                    chars.next();
                    tokens.push(Token::NotEquals);
                } else {
                    tokens.push(Token::Bang);
                }
            }
            _ => {
                let mut word = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || ",()<>=!".contains(c) {
                        break;
                    }
                    word.push(c);
                    chars.next();
                }
                tokens.push(Token::Word(word));
            }
        }
    }
    Ok(tokens)
}

fn parse_requirement(tokens: &[Token], pos: usize) -> Result<(LabelRequirement, usize), ApiError> {
    let err = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}"));
    if tokens.get(pos) == Some(&Token::Bang) {
        let Some(Token::Word(key)) = tokens.get(pos + 1) else {
            return Err(err("expected a key after '!'"));
        };
        let req = LabelRequirement {
            key: validate_key(key)?,
            op: LabelOp::DoesNotExist,
        };
        return Ok((req, pos + 2));
    }
    let Some(Token::Word(key)) = tokens.get(pos) else {
        return Err(err("expected a key"));
    };
    let key = validate_key(key)?;
    let value_at = |i: usize| match tokens.get(i) {
        Some(Token::Word(v)) => Ok((v.clone(), i + 1)),
        // `a=` selects an empty value, as the real parser allows.
        _ => Ok((String::new(), i)),
    };
    let (op, next) = match tokens.get(pos + 1) {
        None | Some(Token::Comma) => (LabelOp::Exists, pos + 1),
        Some(Token::Equals | Token::DoubleEquals) => {
            let (v, next) = value_at(pos + 2)?;
            (LabelOp::Equals(v), next)
        }
        Some(Token::NotEquals) => {
            let (v, next) = value_at(pos + 2)?;
            (LabelOp::NotEquals(v), next)
        }
        Some(Token::Greater | Token::Less) => {
            let greater = tokens.get(pos + 1) == Some(&Token::Greater);
            let Some(Token::Word(v)) = tokens.get(pos + 2) else {
                return Err(err("expected an integer after '>' or '<'"));
            };
            let n: i64 = v.parse().map_err(|_| {
                err(&format!(
                    "for 'gt', 'lt' operators, the value must be an integer: {v}"
                ))
            })?;
            let op = if greater {
                LabelOp::GreaterThan(n)
            } else {
                LabelOp::LessThan(n)
            };
            (op, pos + 3)
        }
        Some(Token::Word(w)) if w == "in" || w == "notin" => {
            let (set, next) = parse_set(tokens, pos + 2)?;
            let op = if w == "in" {
                LabelOp::In(set)
            } else {
                LabelOp::NotIn(set)
            };
            (op, next)
        }
        Some(other) => return Err(err(&format!("unexpected {other:?} after key {key}"))),
    };
    Ok((LabelRequirement { key, op }, next))
}

fn parse_set(tokens: &[Token], mut pos: usize) -> Result<(Vec<String>, usize), ApiError> {
    let err = |why: &str| ApiError::bad_request(format!("unable to parse requirement: {why}"));
    if tokens.get(pos) != Some(&Token::Open) {
        return Err(err("expected '(' after in/notin"));
    }
    pos += 1;
    let mut set = Vec::new();
    loop {
        match tokens.get(pos) {
            Some(Token::Word(v)) => {
                set.push(v.clone());
                pos += 1;
            }
            Some(Token::Close) => return Ok((set, pos + 1)),
            Some(Token::Comma) => pos += 1,
            _ => return Err(err("expected ')' to close the set")),
        }
    }
}

/// Label keys are `[prefix/]name`, name at most 63 characters of
/// alphanumerics, `-`, `_` and `.`.
fn validate_key(key: &str) -> Result<String, ApiError> {
    let name = key.rsplit('/').next().unwrap_or(key);
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && key.len() <= 253 + 1 + 63;
    if ok {
        Ok(key.to_string())
    } else {
        Err(ApiError::bad_request(format!(
            "unable to parse requirement: invalid label key \"{key}\""
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "type": "Opaque"})
    }

    #[test]
    fn label_operators_match_like_apimachinery() {
        let o = obj(json!({"app": "web", "tier": "front", "n": "5"}));
        let cases = [
            ("", true),
            ("app=web", true),
            ("app==web", true),
            ("app!=web", false),
            ("missing!=x", true),
            ("app in (web, api)", true),
            ("app notin (web)", false),
            ("missing notin (web)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("app=web,tier=front", true),
            ("app=web, tier=back", false),
            ("n>4", true),
            ("n<4", false),
        ];
        for (text, want) in cases {
            let sel = LabelSelector::parse(text).unwrap();
            assert_eq!(sel.matches(&o), want, "{text}");
        }
    }

    #[test]
    fn malformed_label_selectors_are_bad_requests() {
        for text in ["app in web", "app=web,", "=x", "a b", "n>x", "app in (a"] {
            let err = LabelSelector::parse(text).unwrap_err();
            assert_eq!(err.code(), 400, "{text}");
        }
    }
}
