//! Masking of personal data before an event reaches a log line.

use serde_json::{Map, Value};

/// Keys whose values are personal data. Matching ignores case and separators, so `firstName`,
/// `first_name` and `FIRST-NAME` are all masked.
const PERSONAL: &[&str] = &[
    "name",
    "firstname",
    "lastname",
    "fullname",
    "middlename",
    "email",
    "phone",
    "phonenumber",
    "mobile",
    "address",
    "street",
    "dateofbirth",
    "dob",
    "birthdate",
    "ssn",
    "taxid",
    "nationalid",
    "passportnumber",
    "iban",
];

fn is_personal(key: &str) -> bool {
    let folded: String = key.chars().filter(char::is_ascii_alphanumeric).map(|c| c.to_ascii_lowercase()).collect();
    PERSONAL.contains(&folded.as_str())
}

/// A copy of `value` in which every personal field is masked, at any depth. An email keeps its
/// first letter and domain (`j***@example.com`), a phone its last two digits, anything else its
/// first letter.
pub fn masked(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(mask_map(map)),
        Value::Array(items) => Value::Array(items.iter().map(masked).collect()),
        other => other.clone(),
    }
}

pub(crate) fn mask_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(key, value)| {
            let value = if is_personal(key) { mask_value(key, value) } else { masked(value) };
            (key.clone(), value)
        })
        .collect()
}

fn mask_value(key: &str, value: &Value) -> Value {
    let Value::String(text) = value else {
        return if value.is_null() { Value::Null } else { Value::String("***".into()) };
    };
    let key = key.to_ascii_lowercase();
    let masked = if key.contains("email") {
        match text.split_once('@') {
            Some((local, domain)) => format!("{}***@{domain}", first_char(local)),
            None => "***".to_owned(),
        }
    } else if key.contains("phone") || key.contains("mobile") {
        let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
        let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
        format!("***{tail}")
    } else {
        format!("{}***", first_char(text))
    };
    Value::String(masked)
}

fn first_char(text: &str) -> String {
    text.chars().next().map(String::from).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn personal_fields_are_masked_at_any_depth_and_others_kept() {
        // Given a customer payload with names, email and phone, one of them nested
        let data = json!({
            "first_name": "John", "lastName": "Doe", "email": "john@example.com",
            "phone": "+1234567890", "kyc_status": "verified",
            "contact": {"mobile": "+44 7700 900123"}, "amount": "10.00"
        });
        // When it is masked
        let out = masked(&data);
        // Then nothing personal survives, and the rest is unchanged
        assert_eq!(
            out,
            json!({
                "first_name": "J***", "lastName": "D***", "email": "j***@example.com",
                "phone": "***90", "kyc_status": "verified",
                "contact": {"mobile": "***23"}, "amount": "10.00"
            })
        );
        let text = out.to_string();
        for secret in ["John", "Doe", "john@", "1234567890", "900123"] {
            assert!(!text.contains(secret), "{secret} leaked into {text}");
        }
    }
}
