//! The strategic merge patch engine: upstream `mergeMap`/`mergeSlice` semantics as
//! kube-apiserver applies them (`MergeParallelList` and `IgnoreUnmatchedNulls` both on).
//!
//! Deliberate differences from upstream, all for inputs kubectl never produces:
//! - values that land in the result wholesale (new fields, new list items, replaced lists and
//!   maps) are cleaned recursively, so no directive or `null` survives into the object;
//! - a `{"$patch": "replace", ...}` map for a field the original lacks yields its content
//!   (upstream silently drops it);
//! - `$`-prefixed keys that are not directives, and malformed `$deleteFromPrimitiveList` values,
//!   are errors instead of being stored as fields;
//! - merging never compares uncomparable values, so the inputs on which upstream panics
//!   (lists of maps used as keys) are ordinary errors or merges here.

use serde_json::{Map, Value};

use crate::error::go_type_name;
use crate::{FieldInfo, PatchError, PatchSchema};

const PATCH_DIRECTIVE: &str = "$patch";
const DELETE: &str = "delete";
const REPLACE: &str = "replace";
const MERGE: &str = "merge";
const RETAIN_KEYS_DIRECTIVE: &str = "$retainKeys";
const SET_ELEMENT_ORDER_PREFIX: &str = "$setElementOrder";
const DELETE_FROM_PRIMITIVE_LIST_PREFIX: &str = "$deleteFromPrimitiveList";

type Object = Map<String, Value>;

/// Applies a strategic merge patch to `original`, an object of OpenAPI definition
/// `root_definition` (e.g. `io.k8s.api.apps.v1.Deployment`), looking up merge strategies and
/// keys through `schema`. Both documents must be JSON objects (`null` counts as `{}`).
pub fn strategic_merge(
    original: &Value,
    patch: &Value,
    schema: &dyn PatchSchema,
    root_definition: &str,
) -> Result<Value, PatchError> {
    let original = as_document(original)?;
    let patch = as_document(patch)?;
    let engine = Engine { schema };
    let merged = engine.merge_object(Some(original), patch, Scope::Definition(root_definition))?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

fn as_document(value: &Value) -> Result<Object, PatchError> {
    match value {
        Value::Object(fields) => Ok(fields.clone()),
        Value::Null => Ok(Object::new()),
        _ => Err(PatchError::BadJsonDocument),
    }
}

/// Where in the type graph a JSON object sits.
#[derive(Clone, Copy, Debug)]
enum Scope<'a> {
    /// An object of a known definition: its keys are fields.
    Definition(&'a str),
    /// A `map[string]X`: its keys are data, every value has definition `X` (if an object type).
    MapValues(Option<&'a str>),
    /// Nothing known: maps merge, lists are replaced.
    Untyped,
}

/// The scope of a field's value (or of its items, for a list).
fn value_scope(info: &FieldInfo) -> Scope<'_> {
    if info.is_map {
        Scope::MapValues(info.child.as_deref())
    } else {
        info.child
            .as_deref()
            .map_or(Scope::Untyped, Scope::Definition)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Strategy {
    /// No tag: maps merge, lists are replaced.
    Default,
    /// `merge`: lists merge too (by key for objects, as a set for scalars).
    Merge,
    /// `replace`: maps are replaced as well.
    Replace,
}

impl Strategy {
    /// `retainKeys` only says the patch may carry a `$retainKeys` directive, which the engine
    /// honours wherever it appears, so it does not change how the field merges.
    fn parse(tag: Option<&str>) -> Result<Strategy, PatchError> {
        let mut strategy = Strategy::Default;
        for part in tag.unwrap_or_default().split(',') {
            match part {
                "" | "retainKeys" => {}
                "merge" if strategy == Strategy::Default => strategy = Strategy::Merge,
                "replace" if strategy == Strategy::Default => strategy = Strategy::Replace,
                _ => {
                    return Err(PatchError::UnknownStrategy {
                        strategy: tag.unwrap_or_default().to_owned(),
                    });
                }
            }
        }
        Ok(strategy)
    }
}

/// The JSON type of list items, which decides how a merging list merges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ItemKind {
    Null,
    Bool,
    Number,
    String,
    Object,
}

/// The common item type of `lists`, `None` when they are all empty.
fn item_kind(lists: &[&[Value]]) -> Result<Option<ItemKind>, PatchError> {
    let mut kind = None;
    for item in lists.iter().flat_map(|list| list.iter()) {
        let item_kind = match item {
            Value::Null => ItemKind::Null,
            Value::Bool(_) => ItemKind::Bool,
            Value::Number(_) => ItemKind::Number,
            Value::String(_) => ItemKind::String,
            Value::Object(_) => ItemKind::Object,
            Value::Array(_) => return Err(PatchError::ListOfLists),
        };
        match kind {
            None => kind = Some(item_kind),
            Some(seen) if seen != item_kind => {
                let lists: Vec<Value> = lists
                    .iter()
                    .map(|list| Value::from(list.to_vec()))
                    .collect();
                return Err(PatchError::MixedListElements {
                    lists: Value::from(lists).to_string(),
                });
            }
            Some(_) => {}
        }
    }
    Ok(kind)
}

/// How list items are identified: by the merge key's value for objects, by value otherwise.
fn identity<'v>(item: &'v Value, merge_key: Option<&str>) -> Option<&'v Value> {
    match (merge_key, item) {
        (Some(key), Value::Object(fields)) => fields.get(key),
        (Some(_), _) => None,
        (None, _) => Some(item),
    }
}

fn position_in(list: &[Value], item: &Value, merge_key: Option<&str>) -> Option<usize> {
    let wanted = identity(item, merge_key)?;
    list.iter()
        .position(|candidate| identity(candidate, merge_key) == Some(wanted))
}

fn no_merge_key(item: &Value, merge_key: &str) -> PatchError {
    PatchError::NoMergeKey {
        map: item.to_string(),
        merge_key: merge_key.to_owned(),
    }
}

/// The value of `merge_key` in `item`, which must be an object that has it.
fn merge_key_value<'v>(item: &'v Value, merge_key: &str) -> Result<&'v Value, PatchError> {
    match item {
        Value::Object(fields) => fields
            .get(merge_key)
            .ok_or_else(|| no_merge_key(item, merge_key)),
        other => Err(PatchError::BadArgType {
            expected: "map[string]interface {}",
            actual: go_type_name(other),
        }),
    }
}

/// The field name after `prefix/` in a directive key such as `$setElementOrder/containers`.
fn directive_field<'k>(key: &'k str, prefix: &str) -> Option<&'k str> {
    let (head, field) = key.split_once('/')?;
    (head == prefix).then_some(field)
}

/// Splits `items` into those whose identity appears in `present` and the rest, keeping order.
fn partition_by_presence(
    items: Vec<Value>,
    present: &[Value],
    merge_key: Option<&str>,
) -> Result<(Vec<Value>, Vec<Value>), PatchError> {
    let mut in_present = Vec::new();
    let mut absent = Vec::new();
    for item in items {
        if let Some(key) = merge_key {
            merge_key_value(&item, key)?;
        }
        if position_in(present, &item, merge_key).is_some() {
            in_present.push(item);
        } else {
            absent.push(item);
        }
    }
    Ok((in_present, absent))
}

/// Upstream's `normalizeElementOrder`: patch items keep the order of `patch_order`, server-only
/// items the order of `server_order`, and the two are interleaved so that a server-only item
/// goes before a patch item only when the live object already had it first.
fn normalize_element_order(
    patch_items: Vec<Value>,
    server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    merge_key: Option<&str>,
) -> Vec<Value> {
    let sorted_by = |items: Vec<Value>, order: &[Value]| -> Vec<(Option<usize>, Value)> {
        let mut keyed: Vec<(usize, Value)> = items
            .into_iter()
            .map(|item| {
                let rank = position_in(order, &item, merge_key).unwrap_or(usize::MAX);
                (rank, item)
            })
            .collect();
        keyed.sort_by_key(|(rank, _)| *rank);
        keyed
            .into_iter()
            .map(|(_, item)| (position_in(server_order, &item, merge_key), item))
            .collect()
    };
    let patch_items = sorted_by(patch_items, patch_order);
    let server_only = sorted_by(server_only, server_order);

    let mut merged = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some((left_rank, _)), Some((right_rank, _))) => {
                matches!((left_rank, right_rank), (Some(l), Some(r)) if l < r)
            }
        };
        let next = if take_left { left.next() } else { right.next() };
        if let Some((_, item)) = next {
            merged.push(item);
        }
    }
    merged
}

/// Upstream's `validatePatchWithSetOrderList`: every (non-deleting) patch item must appear in
/// the `$setElementOrder` list, in the same relative order.
fn validate_order(
    patch_list: &[Value],
    order: &[Value],
    merge_key: Option<&str>,
) -> Result<(), PatchError> {
    if patch_list.is_empty() || order.is_empty() {
        return Ok(());
    }
    let mut remaining = Vec::with_capacity(patch_list.len());
    for item in patch_list {
        if merge_key.is_some() {
            let Value::Object(fields) = item else {
                return Err(PatchError::BadArgType {
                    expected: "map[string]interface {}",
                    actual: go_type_name(item),
                });
            };
            if fields.get(PATCH_DIRECTIVE).and_then(Value::as_str) == Some(DELETE) {
                continue;
            }
        }
        remaining.push(item);
    }
    let (mut patch_index, mut order_index) = (0, 0);
    while patch_index < remaining.len() && order_index < order.len() {
        let item = remaining[patch_index];
        if item.get(PATCH_DIRECTIVE).is_some() {
            patch_index += 1;
            continue;
        }
        let same = match merge_key {
            None => item == &order[order_index],
            Some(key) => merge_key_value(item, key)? == merge_key_value(&order[order_index], key)?,
        };
        if same {
            patch_index += 1;
        }
        order_index += 1;
    }
    if patch_index < remaining.len() {
        return Err(PatchError::SetElementOrderMismatch {
            patch: Value::from(patch_list.to_vec()).to_string(),
            order: Value::from(order.to_vec()).to_string(),
        });
    }
    Ok(())
}

struct Engine<'s> {
    schema: &'s dyn PatchSchema,
}

impl Engine<'_> {
    fn field(&self, scope: Scope<'_>, name: &str) -> FieldInfo {
        match scope {
            Scope::Definition(definition) => self.schema.field(definition, name),
            Scope::MapValues(child) => FieldInfo {
                child: child.map(str::to_owned),
                ..FieldInfo::default()
            },
            Scope::Untyped => FieldInfo::default(),
        }
    }

    /// Merges `patch` into `original` (`None`: the field is absent). Returns `None` when the
    /// result is that the field stays absent. When `original` is `Some`, the result is too.
    fn merge_object(
        &self,
        original: Option<Object>,
        mut patch: Object,
        scope: Scope<'_>,
    ) -> Result<Option<Object>, PatchError> {
        if let Some(directive) = patch.shift_remove(PATCH_DIRECTIVE) {
            return match directive.as_str() {
                Some(REPLACE) => self.merge_object(None, patch, scope),
                // Upstream leaves an empty map rather than removing the field.
                Some(DELETE) => Ok(original.map(|_| Object::new())),
                _ => Err(PatchError::UnknownPatchType {
                    directive: directive.to_string(),
                    map: Value::Object(patch).to_string(),
                }),
            };
        }

        let mut result = original.unwrap_or_default();
        if let Some(retain_keys) = patch.shift_remove(RETAIN_KEYS_DIRECTIVE) {
            apply_retain_keys(&mut result, &patch, &retain_keys)?;
        }

        // Lists with an element order are merged and ordered first, and leave the patch.
        let order_keys: Vec<String> = patch
            .keys()
            .filter(|key| key.starts_with(SET_ELEMENT_ORDER_PREFIX))
            .cloned()
            .collect();
        for order_key in order_keys {
            let Some(order) = patch.shift_remove(&order_key) else {
                continue;
            };
            let field = directive_field(&order_key, SET_ELEMENT_ORDER_PREFIX)
                .ok_or(PatchError::BadSetElementOrderFormat)?;
            let patch_list = patch.shift_remove(field);
            self.merge_ordered_list(&mut result, field, order, patch_list, scope)?;
        }

        for (key, patch_value) in patch {
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX) {
                let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST_PREFIX)
                    .ok_or(PatchError::BadPrimitiveListFormat)?;
                delete_from_primitive_list(&mut result, field, &patch_value)?;
            } else if key.starts_with('$') {
                return Err(PatchError::UnknownDirective { directive: key });
            } else {
                self.merge_field(&mut result, key, patch_value, scope)?;
            }
        }
        Ok(Some(result))
    }

    fn merge_field(
        &self,
        result: &mut Object,
        key: String,
        patch_value: Value,
        scope: Scope<'_>,
    ) -> Result<(), PatchError> {
        if patch_value.is_null() {
            result.shift_remove(&key);
            return Ok(());
        }
        let info = self.field(scope, &key);
        let strategy = Strategy::parse(info.strategy)?;
        let child_scope = value_scope(&info);
        let Some(slot) = result.get_mut(&key) else {
            if let Some(value) = self.new_value(patch_value, child_scope)? {
                result.insert(key, value);
            }
            return Ok(());
        };
        let original = std::mem::take(slot);
        let merged = match (original, patch_value) {
            (Value::Object(original), Value::Object(patch)) => {
                let original = (strategy != Strategy::Replace).then_some(original);
                self.merge_object(original, patch, child_scope)?
                    .map(Value::Object)
            }
            (Value::Array(original), Value::Array(patch)) if strategy == Strategy::Merge => Some(
                Value::Array(self.merge_list(original, patch, info.merge_key, child_scope)?),
            ),
            (_, patch_value) => self.new_value(patch_value, child_scope)?,
        };
        match merged {
            Some(value) => *slot = value,
            None => {
                result.shift_remove(&key);
            }
        }
        Ok(())
    }

    /// A patch value for a field the original lacks (or replaces wholesale), with directives
    /// applied against nothing and `null`s in maps dropped. `None`: the field stays absent.
    fn new_value(&self, patch: Value, scope: Scope<'_>) -> Result<Option<Value>, PatchError> {
        match patch {
            Value::Object(fields) => Ok(self.merge_object(None, fields, scope)?.map(Value::Object)),
            Value::Array(items) => Ok(Some(Value::Array(self.new_list(items, scope)?))),
            scalar => Ok(Some(scalar)),
        }
    }

    /// A list taken wholesale: items that are directives (`$patch: delete`/`replace` markers)
    /// have nothing to act on and are dropped, the rest are cleaned.
    fn new_list(&self, items: Vec<Value>, scope: Scope<'_>) -> Result<Vec<Value>, PatchError> {
        let mut cleaned = Vec::with_capacity(items.len());
        for item in items {
            if let Value::Object(fields) = &item
                && let Some(directive) = fields.get(PATCH_DIRECTIVE)
            {
                match directive.as_str() {
                    Some(DELETE | REPLACE | MERGE) => continue,
                    _ => {
                        return Err(PatchError::UnknownPatchType {
                            directive: directive.to_string(),
                            map: item.to_string(),
                        });
                    }
                }
            }
            let item_scope = if item.is_array() {
                Scope::Untyped
            } else {
                scope
            };
            if let Some(value) = self.new_value(item, item_scope)? {
                cleaned.push(value);
            }
        }
        Ok(cleaned)
    }

    /// Upstream's `mergeSlice` for a list with strategy `merge`.
    fn merge_list(
        &self,
        original: Vec<Value>,
        patch: Vec<Value>,
        merge_key: Option<&str>,
        item_scope: Scope<'_>,
    ) -> Result<Vec<Value>, PatchError> {
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        if item_kind(&[&original, &patch])? != Some(ItemKind::Object) {
            // A set union that keeps the original order, then the patch order.
            let mut merged: Vec<Value> = Vec::with_capacity(original.len() + patch.len());
            for item in original.iter().chain(patch.iter()) {
                if !merged.contains(item) {
                    merged.push(item.clone());
                }
            }
            let (patch_items, server_only) = partition_by_presence(merged, &patch, None)?;
            return Ok(normalize_element_order(
                patch_items,
                server_only,
                &patch,
                &original,
                None,
            ));
        }

        let Some(merge_key) = merge_key else {
            return Err(PatchError::MissingMergeKeyInSchema {
                definition: match item_scope {
                    Scope::Definition(definition) => definition.to_owned(),
                    Scope::MapValues(_) | Scope::Untyped => "map".to_owned(),
                },
            });
        };

        // `$patch` items first: deletions act on the original, `replace` discards it.
        let mut original = original;
        let mut plain_items = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Some(directive) = item.get(PATCH_DIRECTIVE) else {
                plain_items.push(item);
                continue;
            };
            match directive.as_str() {
                Some(DELETE) => {
                    let doomed = merge_key_value(&item, merge_key)?;
                    original
                        .retain(|candidate| identity(candidate, Some(merge_key)) != Some(doomed));
                }
                Some(REPLACE) => replace = true,
                Some(MERGE) => return Err(PatchError::MergeDirectiveInList),
                _ => {
                    return Err(PatchError::UnknownPatchType {
                        directive: directive.to_string(),
                        map: item.to_string(),
                    });
                }
            }
        }
        if replace {
            original = self.new_list(plain_items, item_scope)?;
            plain_items = Vec::new();
        }

        let server_order = original.clone();
        for item in &plain_items {
            let wanted = merge_key_value(item, merge_key)?;
            let Value::Object(patch_fields) = item.clone() else {
                continue;
            };
            match original
                .iter()
                .position(|candidate| identity(candidate, Some(merge_key)) == Some(wanted))
            {
                Some(index) => {
                    let existing = match std::mem::take(&mut original[index]) {
                        Value::Object(fields) => fields,
                        _ => Object::new(),
                    };
                    let merged = self.merge_object(Some(existing), patch_fields, item_scope)?;
                    original[index] = Value::Object(merged.unwrap_or_default());
                }
                None => {
                    if let Some(added) = self.merge_object(None, patch_fields, item_scope)? {
                        original.push(Value::Object(added));
                    }
                }
            }
        }

        let (patch_items, server_only) =
            partition_by_presence(original, &plain_items, Some(merge_key))?;
        for item in &server_order {
            merge_key_value(item, merge_key)?;
        }
        Ok(normalize_element_order(
            patch_items,
            server_only,
            &plain_items,
            &server_order,
            Some(merge_key),
        ))
    }

    /// Upstream's `mergePatchIntoOriginal`: merges the list `field` (if the patch has it) and
    /// then orders the result by `$setElementOrder/field`, with server-only items interleaved
    /// where the live object had them.
    fn merge_ordered_list(
        &self,
        result: &mut Object,
        field: &str,
        order: Value,
        patch_list: Option<Value>,
        scope: Scope<'_>,
    ) -> Result<(), PatchError> {
        let Value::Array(order) = order else {
            return Err(PatchError::BadSetElementOrderFormat);
        };
        let info = self.field(scope, field);
        let strategy = Strategy::parse(info.strategy)?;
        let item_scope = value_scope(&info);
        let merge_key = info.merge_key;

        let original_list = match result.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Array(items)) => Some(items.clone()),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "[]interface {}",
                    actual: go_type_name(other),
                });
            }
        };
        let patch_list = match patch_list {
            None => None,
            Some(Value::Array(items)) => Some(items),
            Some(other) => {
                return Err(PatchError::BadArgType {
                    expected: "[]interface {}",
                    actual: go_type_name(&other),
                });
            }
        };
        validate_order(patch_list.as_deref().unwrap_or_default(), &order, merge_key)?;
        let server_order = original_list.clone().unwrap_or_default();
        let kind = item_kind(&[&server_order, patch_list.as_deref().unwrap_or_default()])?;

        let merged = match (original_list, patch_list) {
            (None, None) => return Ok(()),
            (Some(original), None) => original,
            (None, Some(patch)) => self.new_list(patch, item_scope)?,
            (Some(original), Some(patch)) if strategy == Strategy::Merge => {
                self.merge_list(original, patch, merge_key, item_scope)?
            }
            (Some(_), Some(patch)) => self.new_list(patch, item_scope)?,
        };
        if kind.is_none() {
            result.insert(field.to_owned(), Value::Array(merged));
            return Ok(());
        }
        if let Some(key) = merge_key {
            for entry in &order {
                merge_key_value(entry, key)?;
            }
        }
        let (patch_items, server_only) = partition_by_presence(merged, &order, merge_key)?;
        let ordered =
            normalize_element_order(patch_items, server_only, &order, &server_order, merge_key);
        result.insert(field.to_owned(), Value::Array(ordered));
        Ok(())
    }
}

/// Upstream's `applyRetainKeysDirective`: every key the patch sets must be listed, and keys of
/// the original that are not listed are cleared.
fn apply_retain_keys(
    result: &mut Object,
    patch: &Object,
    retain_keys: &Value,
) -> Result<(), PatchError> {
    let Value::Array(listed) = retain_keys else {
        return Err(PatchError::BadRetainKeysFormat);
    };
    let is_listed = |key: &str| listed.iter().any(|entry| entry.as_str() == Some(key));
    for (key, value) in patch {
        let exempt = value.is_null()
            || key.starts_with(DELETE_FROM_PRIMITIVE_LIST_PREFIX)
            || key.starts_with(SET_ELEMENT_ORDER_PREFIX);
        if !exempt && !is_listed(key) {
            return Err(PatchError::BadRetainKeysFormat);
        }
    }
    result.retain(|key, _| is_listed(key));
    Ok(())
}

/// `$deleteFromPrimitiveList/field: [values]` removes every occurrence of those scalars,
/// whatever the field's strategy. A field the original lacks stays absent.
fn delete_from_primitive_list(
    result: &mut Object,
    field: &str,
    to_delete: &Value,
) -> Result<(), PatchError> {
    let Value::Array(to_delete) = to_delete else {
        return Err(PatchError::BadPrimitiveListFormat);
    };
    if to_delete
        .iter()
        .any(|value| value.is_object() || value.is_array())
    {
        return Err(PatchError::BadPrimitiveListFormat);
    }
    if let Some(Value::Array(items)) = result.get_mut(field) {
        items.retain(|item| !to_delete.contains(item));
    }
    Ok(())
}
