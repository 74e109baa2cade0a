//! Label and field selectors as kube-apiserver reads them from `labelSelector` /
//! `fieldSelector` query parameters and from `LabelSelector` objects, with upstream's parse
//! errors, matching rules and canonical `String()` forms. Also the per-resource field sets
//! that field selectors may name. Parsing and matching only; the list handler decides what to
//! do with a failure (upstream answers 400 BadRequest with the message).

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

use crate::access::{array_at, at, bool_at, int_at, str_or_empty};
use crate::errors::{ApiError, go_quote};
use crate::names::{is_qualified_name, is_valid_label_value};

/// A selector that could not be parsed or converted; `message` is upstream's wording.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    pub message: String,
}

impl SelectorError {
    fn new(message: impl Into<String>) -> Self {
        SelectorError {
            message: message.into(),
        }
    }
    /// The 400 BadRequest kube-apiserver answers a list or watch with.
    pub fn to_api_error(&self) -> ApiError {
        ApiError::bad_request(self.message.clone())
    }
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SelectorError {}

/// `selection.Operator`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operator {
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Exists,
    DoesNotExist,
    GreaterThan,
    LessThan,
}

/// One term of a label selector, e.g. `tier in (web,api)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// In the order given (the string form sorts them).
    pub values: Vec<String>,
}

impl Requirement {
    /// Upstream's `NewRequirement` checks; the error text is the aggregate of field errors with
    /// the paths upstream uses (`key`, `values`, `values[0][<key>]`).
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        let mut errs: Vec<String> = Vec::new();
        let key_msgs = is_qualified_name(key);
        if !key_msgs.is_empty() {
            errs.push(format!(
                "key: Invalid value: {}: {}",
                go_quote(key),
                key_msgs.join("; ")
            ));
        }
        let values_invalid =
            |detail: &str| format!("values: Invalid value: {}: {detail}", go_slice(&values));
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => errs.push(values_invalid(
                "for 'in', 'notin' operators, values set can't be empty",
            )),
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                errs.push(values_invalid(
                    "exact-match compatibility requires one single value",
                ))
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => errs.push(
                values_invalid("values set must be empty for exists and does not exist"),
            ),
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    errs.push(values_invalid(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                for (i, v) in values.iter().enumerate() {
                    if v.parse::<i64>().is_err() {
                        errs.push(format!(
                            "values[{i}]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                            go_quote(v)
                        ));
                    }
                }
            }
            _ => {}
        }
        for (i, v) in values.iter().enumerate() {
            let msgs = is_valid_label_value(v);
            if !msgs.is_empty() {
                errs.push(format!(
                    "values[{i}][{key}]: Invalid value: {}: {}",
                    go_quote(v),
                    msgs.join("; ")
                ));
            }
        }
        if errs.is_empty() {
            Ok(Requirement {
                key: key.to_string(),
                operator,
                values,
            })
        } else {
            Err(SelectorError::new(aggregate(errs)))
        }
    }

    /// Upstream's `Requirement.Matches`.
    pub fn matches(&self, get: &impl Fn(&str) -> Option<String>) -> bool {
        let actual = get(&self.key);
        match self.operator {
            Operator::In | Operator::Equals | Operator::DoubleEquals => {
                actual.is_some_and(|a| self.values.contains(&a))
            }
            Operator::NotIn | Operator::NotEquals => {
                actual.is_none_or(|a| !self.values.contains(&a))
            }
            Operator::Exists => actual.is_some(),
            Operator::DoesNotExist => actual.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let Some(have) = actual.and_then(|a| a.parse::<i64>().ok()) else {
                    return false;
                };
                let [want] = self.values.as_slice() else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    /// Upstream's `Requirement.String()`: values sorted, `in`/`notin` parenthesised.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.operator == Operator::DoesNotExist {
            f.write_str("!")?;
        }
        f.write_str(&self.key)?;
        let op = match self.operator {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => " in ",
            Operator::NotIn => " notin ",
            Operator::GreaterThan => ">",
            Operator::LessThan => "<",
            Operator::Exists | Operator::DoesNotExist => return Ok(()),
        };
        f.write_str(op)?;
        let set_based = matches!(self.operator, Operator::In | Operator::NotIn);
        if set_based {
            f.write_str("(")?;
        }
        let mut sorted = self.values.clone();
        sorted.sort();
        f.write_str(&sorted.join(","))?;
        if set_based {
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// Go's `%#v` of a `[]string`; an empty one came from a nil slice upstream.
fn go_slice(values: &[String]) -> String {
    if values.is_empty() {
        return "[]string(nil)".to_string();
    }
    format!(
        "[]string{{{}}}",
        values
            .iter()
            .map(|v| go_quote(v))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// `utilerrors.NewAggregate(...).Error()`: one message bare, several in brackets, duplicates dropped.
fn aggregate(mut errs: Vec<String>) -> String {
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.as_slice() {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

/// A parsed label selector: the AND of its requirements, sorted by key like upstream's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
    /// `labels.Nothing()`: what a nil `*LabelSelector` converts to; matches no object.
    nothing: bool,
}

impl LabelSelector {
    /// Matches everything (the empty selector).
    pub fn everything() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: false,
        }
    }

    /// Matches nothing (a missing `LabelSelector` object).
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// Builds from requirements, sorting by key (stable, so equal keys keep their order).
    pub fn from_requirements(mut requirements: Vec<Requirement>) -> Self {
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector {
            requirements,
            nothing: false,
        }
    }

    /// Parses the `labelSelector` query syntax (`labels.Parse`).
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        Parser::new(selector).parse().map(Self::from_requirements)
    }

    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// True when it restricts nothing (and is not `nothing`).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Matches against a label map.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(&|k: &str| labels.get(k).cloned())
    }

    /// Matches against an object's `metadata.labels` JSON (absent or wrong-typed = no labels).
    pub fn matches_json(&self, labels: Option<&Value>) -> bool {
        self.matches_with(&|k: &str| {
            labels
                .and_then(|l| l.get(k))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
    }

    /// Matches an object by its `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches_json(at(obj, &["metadata", "labels"]))
    }

    fn matches_with(&self, get: &impl Fn(&str) -> Option<String>) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(get))
    }

    /// The value the selector pins `key` to, if any (`RequiresExactMatch`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let r = self.requirements.iter().find(|r| r.key == key)?;
        match (r.operator, r.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [one]) => Some(one),
            _ => None,
        }
    }
}

impl fmt::Display for LabelSelector {
    /// Upstream's canonical `String()` (`app=web,tier in (a,b)`); what `kubectl get -o wide`
    /// shows and what Scale's `status.selector` holds.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .requirements
            .iter()
            .map(Requirement::to_string)
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Canonical string of a `LabelSelector` object (`metav1.FormatLabelSelector` without the
/// `<none>` substitution); errors as [`label_selector_from_json`].
pub fn selector_string(selector: &Value) -> Result<String, SelectorError> {
    Ok(label_selector_from_json(Some(selector))?.to_string())
}

/// `metav1.LabelSelectorAsSelector`: `None`/null → nothing, `{}` → everything.
pub fn label_selector_from_json(selector: Option<&Value>) -> Result<LabelSelector, SelectorError> {
    let Some(selector) = selector.filter(|v| !v.is_null()) else {
        return Ok(LabelSelector::nothing());
    };
    let match_labels = selector.get("matchLabels").and_then(Value::as_object);
    let exprs = array_at(selector, "matchExpressions");
    if match_labels.is_none_or(|m| m.is_empty()) && exprs.is_empty() {
        return Ok(LabelSelector::everything());
    }
    let mut requirements = Vec::new();
    for (k, v) in match_labels.into_iter().flatten() {
        let value = v.as_str().unwrap_or_default().to_string();
        requirements.push(Requirement::new(k, Operator::Equals, vec![value])?);
    }
    for expr in exprs {
        let raw_op = str_or_empty(expr, "operator");
        let operator = match raw_op {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err(SelectorError::new(format!(
                    "{} is not a valid label selector operator",
                    go_quote(other)
                )));
            }
        };
        let values = array_at(expr, "values")
            .iter()
            .map(|v| v.as_str().unwrap_or_default().to_string())
            .collect();
        requirements.push(Requirement::new(
            str_or_empty(expr, "key"),
            operator,
            values,
        )?);
    }
    Ok(LabelSelector::from_requirements(requirements))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Token {
    Error,
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

fn keyword(s: &str) -> Option<Token> {
    Some(match s {
        ")" => Token::ClosedPar,
        "," => Token::Comma,
        "!" => Token::DoesNotExist,
        "==" => Token::DoubleEquals,
        "=" => Token::Equals,
        ">" => Token::GreaterThan,
        "in" => Token::In,
        "<" => Token::LessThan,
        "!=" => Token::NotEquals,
        "notin" => Token::NotIn,
        "(" => Token::OpenPar,
        _ => return None,
    })
}

fn is_whitespace(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(c: u8) -> bool {
    matches!(c, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Tokenises like upstream's `Lexer` (greedy operators, keywords `in`/`notin`).
fn lex(input: &str) -> Vec<(Token, String)> {
    let bytes = input.as_bytes();
    let mut pos = 0;
    let mut out = Vec::new();
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        if pos >= bytes.len() {
            out.push((Token::EndOfString, String::new()));
            return out;
        }
        let start = pos;
        if is_special(bytes[pos]) {
            let mut last: Option<(Token, usize)> = None;
            while pos < bytes.len() && is_special(bytes[pos]) {
                match keyword(&input[start..=pos]) {
                    Some(tok) => last = Some((tok, pos + 1)),
                    None if last.is_some() => break,
                    None => {}
                }
                pos += 1;
            }
            match last {
                Some((tok, end)) => {
                    pos = end;
                    out.push((tok, input[start..end].to_string()));
                }
                None => out.push((
                    Token::Error,
                    format!("error expected: keyword found '{}'", &input[start..pos]),
                )),
            }
        } else {
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            let word = &input[start..pos];
            out.push((keyword(word).unwrap_or(Token::Identifier), word.to_string()));
        }
    }
}

/// Whether `in`/`notin` read as operators (key position) or as plain values.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser {
    items: Vec<(Token, String)>,
    position: usize,
}

impl Parser {
    fn new(input: &str) -> Self {
        Parser {
            items: lex(input),
            position: 0,
        }
    }

    fn lookahead(&self, ctx: Context) -> (Token, String) {
        let (tok, lit) = self
            .items
            .get(self.position)
            .cloned()
            .unwrap_or((Token::EndOfString, String::new()));
        (Self::in_context(tok, ctx), lit)
    }

    fn consume(&mut self, ctx: Context) -> (Token, String) {
        let item = self.lookahead(ctx);
        if self.position < self.items.len() {
            self.position += 1;
        }
        item
    }

    fn in_context(tok: Token, ctx: Context) -> Token {
        match (ctx, tok) {
            (Context::Values, Token::In | Token::NotIn) => Token::Identifier,
            _ => tok,
        }
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (tok, lit) = self.lookahead(Context::Values);
            match tok {
                Token::Identifier | Token::DoesNotExist => {
                    let r = self.parse_requirement().map_err(|e| {
                        SelectorError::new(format!("unable to parse requirement: {}", e.message))
                    })?;
                    requirements.push(r);
                    let (t, l) = self.consume(Context::Values);
                    match t {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (t2, l2) = self.lookahead(Context::Values);
                            if t2 != Token::Identifier && t2 != Token::DoesNotExist {
                                return Err(SelectorError::new(format!(
                                    "found '{l2}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{l}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{lit}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, inferred) = self.parse_key_and_infer_operator()?;
        if let Some(op) = inferred {
            return Requirement::new(&key, op, Vec::new());
        }
        let operator = self.parse_operator()?;
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        // Upstream collects values in a sets.String and lists them sorted.
        values.sort();
        values.dedup();
        Requirement::new(&key, operator, values)
    }

    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(String, Option<Operator>), SelectorError> {
        let (mut tok, mut lit) = self.consume(Context::Values);
        let negated = tok == Token::DoesNotExist;
        if negated {
            (tok, lit) = self.consume(Context::Values);
        }
        if tok != Token::Identifier {
            return Err(SelectorError::new(format!(
                "found '{lit}', expected: identifier"
            )));
        }
        let msgs = is_qualified_name(&lit);
        if !msgs.is_empty() {
            // Upstream's parser passes a nil field path, which prints as `<nil>`.
            return Err(SelectorError::new(format!(
                "<nil>: Invalid value: {}: {}",
                go_quote(&lit),
                msgs.join("; ")
            )));
        }
        let (next, _) = self.lookahead(Context::Values);
        let operator = if negated {
            Some(Operator::DoesNotExist)
        } else if next == Token::EndOfString || next == Token::Comma {
            Some(Operator::Exists)
        } else {
            None
        };
        Ok((lit, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (tok, lit) = self.consume(Context::KeyAndOperator);
        Ok(match tok {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(SelectorError::new(format!(
                    "found '{lit}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, lit) = self.consume(Context::Values);
        if tok != Token::OpenPar {
            return Err(SelectorError::new(format!("found '{lit}' expected: '('")));
        }
        let (tok, lit) = self.lookahead(Context::Values);
        match tok {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                let (tok, _) = self.consume(Context::Values);
                if tok != Token::ClosedPar {
                    return Err(SelectorError::new(format!("found '{lit}', expected: ')'")));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(SelectorError::new(format!(
                "found '{lit}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            let (tok, lit) = self.consume(Context::Values);
            match tok {
                Token::Identifier => {
                    values.push(lit);
                    let (tok2, lit2) = self.lookahead(Context::Values);
                    match tok2 {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(SelectorError::new(format!(
                                "found '{lit2}', expected: ',' or ')'"
                            )));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    let (tok2, _) = self.lookahead(Context::Values);
                    if tok2 == Token::ClosedPar {
                        values.push(String::new());
                        return Ok(values);
                    }
                    if tok2 == Token::Comma {
                        self.consume(Context::Values);
                        values.push(String::new());
                    }
                }
                _ => {
                    return Err(SelectorError::new(format!(
                        "found '{lit}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (tok, _) = self.lookahead(Context::Values);
        if tok == Token::EndOfString || tok == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (tok, lit) = self.consume(Context::Values);
        if tok == Token::Identifier {
            Ok(vec![lit])
        } else {
            Err(SelectorError::new(format!(
                "found '{lit}', expected: identifier"
            )))
        }
    }
}

/// One `field=value` / `field!=value` term.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldTerm {
    pub field: String,
    pub value: String,
    pub negated: bool,
}

/// A parsed field selector: the AND of its terms (sorted as upstream sorts them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

impl FieldSelector {
    /// `fields.ParseSelector`: comma-separated terms, `\,` `\=` `\\` escapes in values.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parts = split_terms(selector);
        parts.sort();
        let mut terms = Vec::new();
        for part in parts.iter().filter(|p| !p.is_empty()) {
            let Some((lhs, op, rhs)) = split_term(part) else {
                return Err(SelectorError::new(format!(
                    "invalid selector: '{selector}'; can't understand '{part}'"
                )));
            };
            let value = unescape_value(rhs)?;
            terms.push(FieldTerm {
                field: lhs.to_string(),
                value,
                negated: op == "!=",
            });
        }
        Ok(FieldSelector { terms })
    }

    pub fn terms(&self) -> &[FieldTerm] {
        &self.terms
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Matches a field set; an absent field reads as `""`, as upstream's `Fields.Get`.
    pub fn matches(&self, fields: &BTreeMap<String, String>) -> bool {
        self.terms.iter().all(|t| {
            let actual = fields.get(&t.field).map(String::as_str).unwrap_or("");
            (actual == t.value) != t.negated
        })
    }

    /// The value the selector pins `field` to with `=`/`==`, if any.
    pub fn requires_exact_match(&self, field: &str) -> Option<&str> {
        self.terms
            .iter()
            .find(|t| t.field == field && !t.negated)
            .map(|t| t.value.as_str())
    }

    /// The per-kind field label conversion the list handler runs first (`ConvertFieldLabel`):
    /// unsupported fields are an error worded like upstream's; `spec.host` becomes
    /// `spec.nodeName` for pods.
    pub fn convert_for(&self, group: &str, resource: &str) -> Result<FieldSelector, SelectorError> {
        let mut terms = Vec::with_capacity(self.terms.len());
        for t in &self.terms {
            let field = convert_field_label(group, resource, &t.field)?;
            terms.push(FieldTerm {
                field,
                value: t.value.clone(),
                negated: t.negated,
            });
        }
        Ok(FieldSelector { terms })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .terms
            .iter()
            .map(|t| {
                format!(
                    "{}{}{}",
                    t.field,
                    if t.negated { "!=" } else { "=" },
                    escape_value(&t.value)
                )
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

fn escape_value(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace(',', "\\,")
        .replace('=', "\\=")
}

fn split_terms(selector: &str) -> Vec<String> {
    if selector.is_empty() {
        return Vec::new();
    }
    let mut terms = Vec::new();
    let mut start = 0;
    let mut in_slash = false;
    for (i, c) in selector.char_indices() {
        if in_slash {
            in_slash = false;
        } else if c == '\\' {
            in_slash = true;
        } else if c == ',' {
            terms.push(selector[start..i].to_string());
            start = i + 1;
        }
    }
    terms.push(selector[start..].to_string());
    terms
}

fn split_term(term: &str) -> Option<(&str, &str, &str)> {
    for (i, _) in term.char_indices() {
        let rest = &term[i..];
        for op in ["!=", "==", "="] {
            if let Some(rhs) = rest.strip_prefix(op) {
                return Some((&term[..i], op, rhs));
            }
        }
    }
    None
}

fn unescape_value(s: &str) -> Result<String, SelectorError> {
    if !s.contains(['\\', ',', '=']) {
        return Ok(s.to_string());
    }
    let mut out = String::with_capacity(s.len());
    let mut in_slash = false;
    for c in s.chars() {
        if in_slash {
            match c {
                '\\' | ',' | '=' => out.push(c),
                other => {
                    return Err(SelectorError::new(format!(
                        "invalid field selector: invalid escape sequence: \\{other}"
                    )));
                }
            }
            in_slash = false;
            continue;
        }
        match c {
            '\\' => in_slash = true,
            // Go prints the rune with %v, i.e. as its number.
            ',' | '=' => {
                return Err(SelectorError::new(format!(
                    "invalid field selector: unescaped character in value: {}",
                    c as u32
                )));
            }
            c => out.push(c),
        }
    }
    if in_slash {
        return Err(SelectorError::new(
            "invalid field selector: invalid escape sequence: \\",
        ));
    }
    Ok(out)
}

/// Field selectors each resource's v1 conversion accepts (`AddFieldLabelConversionFunc`), or
/// `None` for kinds using the default (`metadata.name`, `metadata.namespace`).
fn supported_field_labels(group: &str, resource: &str) -> Option<&'static [&'static str]> {
    Some(match (group, resource) {
        ("", "pods") => &[
            "metadata.name",
            "metadata.namespace",
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ],
        ("", "nodes") => &["metadata.name", "spec.unschedulable"],
        ("", "replicationcontrollers") => {
            &["metadata.name", "metadata.namespace", "status.replicas"]
        }
        ("", "events") => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "metadata.namespace",
            "metadata.name",
        ],
        ("", "namespaces") => &["status.phase", "metadata.name"],
        ("", "secrets") => &["type", "metadata.namespace", "metadata.name"],
        ("", "services") => &[
            "metadata.namespace",
            "metadata.name",
            "spec.clusterIP",
            "spec.type",
        ],
        _ => return None,
    })
}

fn convert_field_label(group: &str, resource: &str, label: &str) -> Result<String, SelectorError> {
    if group.is_empty() && resource == "pods" && label == "spec.host" {
        return Ok("spec.nodeName".to_string());
    }
    match supported_field_labels(group, resource) {
        Some(list) if list.contains(&label) => Ok(label.to_string()),
        Some(_) => Err(SelectorError::new(format!(
            "field label not supported: {label}"
        ))),
        None if label == "metadata.name" || label == "metadata.namespace" => Ok(label.to_string()),
        None => Err(SelectorError::new(format!(
            "{} is not a known field selector: only \"metadata.name\", \"metadata.namespace\"",
            go_quote(label)
        ))),
    }
}

/// Resources whose objects live in no namespace (their field set has no `metadata.namespace`).
fn cluster_scoped(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("", "nodes" | "namespaces" | "persistentvolumes")
    )
}

/// The fields an object exposes to field selectors (upstream's per-registry `GetAttrs`), with
/// Go's renderings (`"true"`/`"false"`, decimal integers, `""` for absent).
pub fn object_fields(group: &str, resource: &str, obj: &Value) -> BTreeMap<String, String> {
    let mut f = BTreeMap::new();
    let s = |path: &[&str]| {
        at(obj, path)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    f.insert("metadata.name".to_string(), s(&["metadata", "name"]));
    if !cluster_scoped(group, resource) {
        f.insert(
            "metadata.namespace".to_string(),
            s(&["metadata", "namespace"]),
        );
    }
    match (group, resource) {
        ("", "pods") => {
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let status = obj.get("status").unwrap_or(&Value::Null);
            for k in [
                "nodeName",
                "restartPolicy",
                "schedulerName",
                "serviceAccountName",
            ] {
                f.insert(format!("spec.{k}"), str_or_empty(spec, k).to_string());
            }
            f.insert(
                "spec.hostNetwork".to_string(),
                bool_at(spec, "hostNetwork").to_string(),
            );
            f.insert(
                "status.phase".to_string(),
                str_or_empty(status, "phase").to_string(),
            );
            let pod_ip = array_at(status, "podIPs")
                .first()
                .map(|p| str_or_empty(p, "ip"))
                .unwrap_or_else(|| str_or_empty(status, "podIP"));
            f.insert("status.podIP".to_string(), pod_ip.to_string());
            f.insert(
                "status.nominatedNodeName".to_string(),
                str_or_empty(status, "nominatedNodeName").to_string(),
            );
        }
        ("", "nodes") => {
            let unschedulable = obj.get("spec").is_some_and(|s| bool_at(s, "unschedulable"));
            f.insert("spec.unschedulable".to_string(), unschedulable.to_string());
        }
        ("", "namespaces") => {
            f.insert("status.phase".to_string(), s(&["status", "phase"]));
        }
        ("", "services") => {
            f.insert("spec.clusterIP".to_string(), s(&["spec", "clusterIP"]));
            f.insert("spec.type".to_string(), s(&["spec", "type"]));
        }
        ("", "secrets") => {
            f.insert("type".to_string(), str_or_empty(obj, "type").to_string());
        }
        ("", "events") => {
            let involved = obj.get("involvedObject").unwrap_or(&Value::Null);
            for k in [
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            ] {
                f.insert(
                    format!("involvedObject.{k}"),
                    str_or_empty(involved, k).to_string(),
                );
            }
            let reporting = str_or_empty(obj, "reportingComponent");
            let mut source = s(&["source", "component"]);
            if source.is_empty() {
                source = reporting.to_string();
            }
            f.insert(
                "reason".to_string(),
                str_or_empty(obj, "reason").to_string(),
            );
            f.insert("reportingComponent".to_string(), reporting.to_string());
            f.insert("source".to_string(), source);
            f.insert("type".to_string(), str_or_empty(obj, "type").to_string());
        }
        ("apps", "replicasets") | ("", "replicationcontrollers") => {
            let replicas = obj
                .get("status")
                .and_then(|s| int_at(s, "replicas"))
                .unwrap_or(0);
            f.insert("status.replicas".to_string(), replicas.to_string());
        }
        _ => {}
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_and_canonical_string_table() {
        let cases = [
            ("", ""),
            ("app=web", "app=web"),
            ("app==web", "app==web"),
            ("app!=web", "app!=web"),
            ("tier in (web,api)", "tier in (api,web)"),
            ("tier notin (x)", "tier notin (x)"),
            ("b,!a", "!a,b"),
            ("z=1, a in (c, b)", "a in (b,c),z=1"),
            ("x in (in,notin)", "x in (in,notin)"),
            ("a=", "a="),
            ("a in ()", "a in ()"),
            ("a in (,b)", "a in (,b)"),
            ("a>3", "a>3"),
        ];
        for (input, want) in cases {
            let sel = LabelSelector::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(sel.to_string(), want, "{input:?}");
        }
    }

    #[test]
    fn parse_errors_are_upstreams() {
        let cases = [
            (
                "a b",
                "unable to parse requirement: found 'b', expected: in, notin, =, ==, !=, gt, lt",
            ),
            ("a=b,", "found '', expected: identifier after ','"),
            (
                "=b",
                "found '=', expected: !, identifier, or 'end of string'",
            ),
            (
                "a in b",
                "unable to parse requirement: found 'b' expected: '('",
            ),
            (
                "a in (b c)",
                "unable to parse requirement: found 'c', expected: ',' or ')'",
            ),
            ("a=b=c", "found '=', expected: ',' or 'end of string'"),
            (
                "a>x",
                "unable to parse requirement: values[0]: Invalid value: \"x\": for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "a=b*",
                "unable to parse requirement: values[0][a]: Invalid value: \"b*\": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            ),
            (
                "-a=b",
                "unable to parse requirement: <nil>: Invalid value: \"-a\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
            ),
        ];
        for (input, want) in cases {
            let err = LabelSelector::parse(input).expect_err(input);
            assert_eq!(err.message, want, "{input:?}");
        }
    }

    #[test]
    fn matching_table() {
        let l = labels(&[("app", "web"), ("tier", "front"), ("n", "5")]);
        let cases = [
            ("", true),
            ("app=web", true),
            ("app=api", false),
            ("app!=api", true),
            ("missing!=x", true),
            ("tier in (front,back)", true),
            ("tier notin (front)", false),
            ("missing notin (x)", true),
            ("app", true),
            ("!app", false),
            ("!missing", true),
            ("n>4,n<6", true),
            ("n>5", false),
            ("app=web,tier=back", false),
        ];
        for (input, want) in cases {
            assert_eq!(
                LabelSelector::parse(input).unwrap().matches(&l),
                want,
                "{input:?}"
            );
        }
        assert!(!LabelSelector::nothing().matches(&l));
    }

    #[test]
    fn label_selector_objects() {
        let sel = json!({"matchLabels": {"app": "web"}, "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["b", "a"]},
            {"key": "legacy", "operator": "DoesNotExist"}]});
        assert_eq!(
            selector_string(&sel).unwrap(),
            "app=web,!legacy,tier in (a,b)"
        );
        let parsed = label_selector_from_json(Some(&sel)).unwrap();
        assert!(parsed.matches_json(Some(&json!({"app": "web", "tier": "a"}))));
        assert!(!parsed.matches_json(Some(&json!({"app": "web", "tier": "a", "legacy": "1"}))));
        assert!(
            label_selector_from_json(Some(&json!({})))
                .unwrap()
                .is_empty()
        );
        assert!(
            !label_selector_from_json(None)
                .unwrap()
                .matches(&BTreeMap::new())
        );
        let bad = json!({"matchExpressions": [{"key": "a", "operator": "Gt", "values": ["1"]}]});
        assert_eq!(
            label_selector_from_json(Some(&bad)).unwrap_err().message,
            "\"Gt\" is not a valid label selector operator"
        );
        let empty_in = json!({"matchExpressions": [{"key": "a", "operator": "In"}]});
        assert_eq!(
            label_selector_from_json(Some(&empty_in))
                .unwrap_err()
                .message,
            "values: Invalid value: []string(nil): for 'in', 'notin' operators, values set can't be empty"
        );
    }

    #[test]
    fn field_selectors() {
        let sel = FieldSelector::parse("spec.nodeName=node-1,status.phase!=Failed").unwrap();
        let mut fields = labels(&[("spec.nodeName", "node-1"), ("status.phase", "Running")]);
        assert!(sel.matches(&fields));
        fields.insert("status.phase".into(), "Failed".into());
        assert!(!sel.matches(&fields));
        assert_eq!(sel.requires_exact_match("spec.nodeName"), Some("node-1"));
        assert!(
            FieldSelector::parse("a==b")
                .unwrap()
                .matches(&labels(&[("a", "b")]))
        );
        assert!(
            FieldSelector::parse("a=")
                .unwrap()
                .matches(&BTreeMap::new())
        );
        assert_eq!(
            FieldSelector::parse(r"a=x\,y").unwrap().terms()[0].value,
            "x,y"
        );
        assert_eq!(
            FieldSelector::parse("a").unwrap_err().message,
            "invalid selector: 'a'; can't understand 'a'"
        );
        assert_eq!(
            FieldSelector::parse("a=b=c").unwrap_err().message,
            "invalid field selector: unescaped character in value: 61"
        );
        assert_eq!(
            FieldSelector::parse(r"a=b\x").unwrap_err().message,
            "invalid field selector: invalid escape sequence: \\x"
        );
    }

    #[test]
    fn field_label_conversion() {
        let pods = FieldSelector::parse("spec.host=n1")
            .unwrap()
            .convert_for("", "pods")
            .unwrap();
        assert_eq!(pods.terms()[0].field, "spec.nodeName");
        let err = FieldSelector::parse("spec.foo=1")
            .unwrap()
            .convert_for("", "pods")
            .unwrap_err();
        assert_eq!(err.message, "field label not supported: spec.foo");
        assert_eq!(err.to_api_error().code, 400);
        let err = FieldSelector::parse("metadata.namespace=x")
            .unwrap()
            .convert_for("", "namespaces")
            .unwrap_err();
        assert_eq!(err.message, "field label not supported: metadata.namespace");
        let err = FieldSelector::parse("status.replicas=1")
            .unwrap()
            .convert_for("apps", "replicasets")
            .unwrap_err();
        assert_eq!(
            err.message,
            "\"status.replicas\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
        );
        assert!(
            FieldSelector::parse("metadata.name=x")
                .unwrap()
                .convert_for("apps", "deployments")
                .is_ok()
        );
    }

    #[test]
    fn object_fields_per_resource() {
        let pod = json!({"metadata": {"name": "p", "namespace": "d"},
            "spec": {"nodeName": "n1", "hostNetwork": true},
            "status": {"phase": "Running", "podIPs": [{"ip": "10.0.0.5"}]}});
        let f = object_fields("", "pods", &pod);
        assert_eq!(f["spec.nodeName"], "n1");
        assert_eq!(f["spec.hostNetwork"], "true");
        assert_eq!(f["status.podIP"], "10.0.0.5");
        assert_eq!(f["spec.restartPolicy"], "");
        let node = object_fields(
            "",
            "nodes",
            &json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}}),
        );
        assert_eq!(node.get("metadata.namespace"), None);
        assert_eq!(node["spec.unschedulable"], "true");
        let ev = object_fields(
            "",
            "events",
            &json!({"involvedObject": {"kind": "Pod"}, "reportingComponent": "kubelet"}),
        );
        assert_eq!(ev["source"], "kubelet");
        assert_eq!(ev["involvedObject.kind"], "Pod");
        let odd = object_fields("", "pods", &json!([1, 2]));
        assert_eq!(odd["metadata.name"], "");
    }
}
