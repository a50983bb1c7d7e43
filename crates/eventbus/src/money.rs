//! Money: a decimal amount with an ISO 4217 currency. Never a float; on the wire the amount is a
//! string (`"100.50"`).

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Active ISO 4217 codes with their minor units (digits after the point).
const ISO_4217: &[(&str, u32)] = &[
    ("AED", 2),
    ("AFN", 2),
    ("ALL", 2),
    ("AMD", 2),
    ("ANG", 2),
    ("AOA", 2),
    ("ARS", 2),
    ("AUD", 2),
    ("AWG", 2),
    ("AZN", 2),
    ("BAM", 2),
    ("BBD", 2),
    ("BDT", 2),
    ("BGN", 2),
    ("BHD", 3),
    ("BIF", 0),
    ("BMD", 2),
    ("BND", 2),
    ("BOB", 2),
    ("BRL", 2),
    ("BSD", 2),
    ("BTN", 2),
    ("BWP", 2),
    ("BYN", 2),
    ("BZD", 2),
    ("CAD", 2),
    ("CDF", 2),
    ("CHF", 2),
    ("CLP", 0),
    ("CNY", 2),
    ("COP", 2),
    ("CRC", 2),
    ("CUP", 2),
    ("CVE", 2),
    ("CZK", 2),
    ("DJF", 0),
    ("DKK", 2),
    ("DOP", 2),
    ("DZD", 2),
    ("EGP", 2),
    ("ERN", 2),
    ("ETB", 2),
    ("EUR", 2),
    ("FJD", 2),
    ("FKP", 2),
    ("GBP", 2),
    ("GEL", 2),
    ("GHS", 2),
    ("GIP", 2),
    ("GMD", 2),
    ("GNF", 0),
    ("GTQ", 2),
    ("GYD", 2),
    ("HKD", 2),
    ("HNL", 2),
    ("HTG", 2),
    ("HUF", 2),
    ("IDR", 2),
    ("ILS", 2),
    ("INR", 2),
    ("IQD", 3),
    ("IRR", 2),
    ("ISK", 0),
    ("JMD", 2),
    ("JOD", 3),
    ("JPY", 0),
    ("KES", 2),
    ("KGS", 2),
    ("KHR", 2),
    ("KMF", 0),
    ("KPW", 2),
    ("KRW", 0),
    ("KWD", 3),
    ("KYD", 2),
    ("KZT", 2),
    ("LAK", 2),
    ("LBP", 2),
    ("LKR", 2),
    ("LRD", 2),
    ("LSL", 2),
    ("LYD", 3),
    ("MAD", 2),
    ("MDL", 2),
    ("MGA", 2),
    ("MKD", 2),
    ("MMK", 2),
    ("MNT", 2),
    ("MOP", 2),
    ("MRU", 2),
    ("MUR", 2),
    ("MVR", 2),
    ("MWK", 2),
    ("MXN", 2),
    ("MYR", 2),
    ("MZN", 2),
    ("NAD", 2),
    ("NGN", 2),
    ("NIO", 2),
    ("NOK", 2),
    ("NPR", 2),
    ("NZD", 2),
    ("OMR", 3),
    ("PAB", 2),
    ("PEN", 2),
    ("PGK", 2),
    ("PHP", 2),
    ("PKR", 2),
    ("PLN", 2),
    ("PYG", 0),
    ("QAR", 2),
    ("RON", 2),
    ("RSD", 2),
    ("RUB", 2),
    ("RWF", 0),
    ("SAR", 2),
    ("SBD", 2),
    ("SCR", 2),
    ("SDG", 2),
    ("SEK", 2),
    ("SGD", 2),
    ("SHP", 2),
    ("SLE", 2),
    ("SOS", 2),
    ("SRD", 2),
    ("SSP", 2),
    ("STN", 2),
    ("SVC", 2),
    ("SYP", 2),
    ("SZL", 2),
    ("THB", 2),
    ("TJS", 2),
    ("TMT", 2),
    ("TND", 3),
    ("TOP", 2),
    ("TRY", 2),
    ("TTD", 2),
    ("TWD", 2),
    ("TZS", 2),
    ("UAH", 2),
    ("UGX", 0),
    ("USD", 2),
    ("UYU", 2),
    ("UZS", 2),
    ("VES", 2),
    ("VND", 0),
    ("VUV", 0),
    ("WST", 2),
    ("XAF", 0),
    ("XCD", 2),
    ("XOF", 0),
    ("XPF", 0),
    ("YER", 2),
    ("ZAR", 2),
    ("ZMW", 2),
    ("ZWG", 2),
];

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MoneyError {
    /// The code is not an active ISO 4217 currency. Use the three-letter upper-case code.
    #[error("unknown currency `{0}`: expected an ISO 4217 code such as USD")]
    UnknownCurrency(String),
    /// The amount is not a decimal number written as a string.
    #[error("invalid amount `{0}`: expected a decimal string such as \"100.50\"")]
    InvalidAmount(String),
    /// The amount has more decimal places than the currency allows.
    #[error("amount {amount} has more than {minor_units} decimal places for {currency}")]
    TooPrecise {
        /// The amount as given.
        amount: Decimal,
        /// The currency it was given in.
        currency: Currency,
        /// The decimal places that currency allows.
        minor_units: u32,
    },
    /// Two amounts in different currencies were combined. Convert one of them first.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// The currency of the amount the operation was called on.
        left: Currency,
        /// The currency of the other amount.
        right: Currency,
    },
    /// The result does not fit in a decimal (about 7.9e28).
    #[error("amount overflow")]
    Overflow,
}

/// An ISO 4217 currency code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    minor_units: u32,
}

impl Currency {
    /// The three-letter upper-case code, e.g. `USD`.
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Digits after the decimal point, e.g. 2 for USD, 0 for JPY.
    pub fn minor_units(&self) -> u32 {
        self.minor_units
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ISO_4217
            .iter()
            .find(|(code, _)| *code == s)
            .map(|&(code, minor_units)| Self { code, minor_units })
            .ok_or_else(|| MoneyError::UnknownCurrency(s.to_owned()))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let code = String::deserialize(d)?;
        code.parse().map_err(serde::de::Error::custom)
    }
}

/// An amount of money in one currency. The amount never has more decimal places than the
/// currency's minor units, and arithmetic is checked. Read from JSON, it passes the same checks
/// as [`Money::new`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "UncheckedMoney")]
pub struct Money {
    #[serde(serialize_with = "amount_to_string")]
    amount: Decimal,
    currency: Currency,
}

/// Money as read, before [`Money::new`] checks it.
#[derive(Deserialize)]
struct UncheckedMoney {
    #[serde(deserialize_with = "amount_from_string")]
    amount: Decimal,
    currency: Currency,
}

impl TryFrom<UncheckedMoney> for Money {
    type Error = MoneyError;

    fn try_from(money: UncheckedMoney) -> Result<Self, Self::Error> {
        Money::new(money.amount, money.currency)
    }
}

impl Money {
    /// Money of `amount` in `currency`; refuses more decimal places than the currency has.
    pub fn new(amount: Decimal, currency: Currency) -> Result<Self, MoneyError> {
        let normalized = amount.normalize();
        if normalized.scale() > currency.minor_units {
            return Err(MoneyError::TooPrecise { amount, currency, minor_units: currency.minor_units });
        }
        Ok(Self { amount: in_minor_units(normalized, currency), currency })
    }

    /// Parses `"100.50"` and `"USD"`, the form amounts take in event payloads.
    pub fn parse(amount: &str, currency: &str) -> Result<Self, MoneyError> {
        let currency: Currency = currency.parse()?;
        Self::new(parse_amount(amount)?, currency)
    }

    /// No money in `currency`, written with its minor units (`0.00` for USD).
    pub fn zero(currency: Currency) -> Self {
        Self { amount: in_minor_units(Decimal::ZERO, currency), currency }
    }

    /// The decimal amount in the currency's major unit (dollars, not cents), e.g. `100.50`.
    pub fn amount(&self) -> Decimal {
        self.amount
    }

    /// The ISO 4217 currency of the amount.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// Whether the amount is below zero; zero is never negative.
    pub fn is_negative(&self) -> bool {
        self.amount.is_sign_negative() && !self.amount.is_zero()
    }

    /// The sum of two amounts in the same currency; [`MoneyError::CurrencyMismatch`] or
    /// [`MoneyError::Overflow`] otherwise.
    pub fn checked_add(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_add(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Self { amount, currency: self.currency })
    }

    /// `self` minus `other`, in the same currency; [`MoneyError::CurrencyMismatch`] or
    /// [`MoneyError::Overflow`] otherwise.
    pub fn checked_sub(self, other: Self) -> Result<Self, MoneyError> {
        self.same_currency(other)?;
        let amount = self.amount.checked_sub(other.amount).ok_or(MoneyError::Overflow)?;
        Ok(Self { amount, currency: self.currency })
    }

    /// Multiplies by a factor (a rate, a quantity) and rounds half to even to the currency's
    /// minor units, as banks do.
    pub fn checked_mul(self, factor: Decimal) -> Result<Self, MoneyError> {
        let amount = self.amount.checked_mul(factor).ok_or(MoneyError::Overflow)?;
        let rounded = amount.round_dp(self.currency.minor_units);
        Ok(Self { amount: in_minor_units(rounded, self.currency), currency: self.currency })
    }

    fn same_currency(&self, other: Self) -> Result<(), MoneyError> {
        if self.currency == other.currency {
            Ok(())
        } else {
            Err(MoneyError::CurrencyMismatch { left: self.currency, right: other.currency })
        }
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.amount, self.currency)
    }
}

/// Parses a decimal amount written as a string: an optional `-`, digits, and optionally a `.`
/// and more digits. Anything else is refused: a `+` sign, white space, exponents, thousands
/// separators, `NaN`, and more digits than a decimal holds exactly.
pub fn parse_amount(text: &str) -> Result<Decimal, MoneyError> {
    let invalid = || MoneyError::InvalidAmount(text.chars().take(40).collect());
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = unsigned.split_once('.').unwrap_or((unsigned, "0"));
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !digits(fraction) {
        return Err(invalid());
    }
    Decimal::from_str_exact(text).map_err(|_| invalid())
}

/// The amount written with exactly the currency's minor units (`100.5` becomes `100.50`).
fn in_minor_units(mut amount: Decimal, currency: Currency) -> Decimal {
    amount.rescale(currency.minor_units);
    amount
}

fn amount_to_string<S: Serializer>(amount: &Decimal, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&amount.to_string())
}

fn amount_from_string<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
    let text = String::deserialize(d)?;
    parse_amount(&text).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn usd(a: &str) -> Money {
        Money::parse(a, "USD").unwrap()
    }

    #[test]
    fn money_read_from_json_is_checked_like_money_built_in_code() {
        // Given amounts with more decimals than their currency, and one with fewer
        let too_precise = serde_json::json!({"amount": "1.001", "currency": "USD"});
        let yen = serde_json::json!({"amount": "5.5", "currency": "JPY"});
        let short = serde_json::json!({"amount": "1.5", "currency": "USD"});
        // When they are read, then the too precise ones are refused and the other is written in
        // the currency's minor units
        let error = serde_json::from_value::<Money>(too_precise).unwrap_err();
        assert!(error.to_string().contains("1.001"), "{error}");
        assert!(serde_json::from_value::<Money>(yen).is_err());
        assert_eq!(serde_json::from_value::<Money>(short).unwrap().amount().to_string(), "1.50");
    }

    #[test]
    fn amounts_serialise_as_strings_next_to_their_currency() {
        let money = usd("100.50");
        let json = serde_json::to_value(money).unwrap();
        assert_eq!(json, serde_json::json!({"amount": "100.50", "currency": "USD"}));
        assert_eq!(serde_json::from_value::<Money>(json).unwrap(), money);
    }

    #[test]
    fn a_numeric_amount_on_the_wire_is_refused() {
        let err = serde_json::from_value::<Money>(serde_json::json!({"amount": 100.5, "currency": "USD"}));
        assert!(err.is_err());
    }

    #[test]
    fn mixing_currencies_is_refused() {
        let eur = Money::parse("1.00", "EUR").unwrap();
        assert!(matches!(usd("1.00").checked_add(eur), Err(MoneyError::CurrencyMismatch { .. })));
        assert!(matches!(usd("1.00").checked_sub(eur), Err(MoneyError::CurrencyMismatch { .. })));
    }

    #[test]
    fn unknown_currencies_and_excess_precision_are_refused() {
        assert!(matches!(Money::parse("1", "XYZ"), Err(MoneyError::UnknownCurrency(_))));
        assert!(matches!(Money::parse("1", "usd"), Err(MoneyError::UnknownCurrency(_))));
        assert!(matches!(Money::parse("1.001", "USD"), Err(MoneyError::TooPrecise { .. })));
        assert!(matches!(Money::parse("1.5", "JPY"), Err(MoneyError::TooPrecise { .. })));
        assert!(matches!(Money::parse("1e3", "USD"), Err(MoneyError::InvalidAmount(_))));
        assert!(Money::parse("1.500", "BHD").is_ok());
    }

    #[test]
    fn only_plain_decimal_strings_are_amounts() {
        for good in ["5", "5.00", "-5.00", "0.5", "123456789012.34"] {
            assert!(Money::parse(good, "USD").is_ok(), "{good}");
        }
        let thirty_digits = "1".repeat(30);
        for bad in ["+5.00", " 5.00", "5.00 ", "1e400", "NaN", "inf", "5.", ".5", "1,000.00", "--5", "", &thirty_digits]
        {
            assert!(matches!(Money::parse(bad, "USD"), Err(MoneyError::InvalidAmount(_))), "{bad:?}");
        }
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let max = Money::new(Decimal::MAX, "JPY".parse().unwrap()).unwrap();
        assert_eq!(max.checked_add(max), Err(MoneyError::Overflow));
        assert_eq!(max.checked_mul(Decimal::TWO), Err(MoneyError::Overflow));
    }

    #[test]
    fn multiplication_rounds_half_to_even_in_minor_units() {
        assert_eq!(usd("10.00").checked_mul(Decimal::new(1225, 4)).unwrap(), usd("1.22"));
        assert_eq!(usd("10.00").checked_mul(Decimal::new(1235, 4)).unwrap(), usd("1.24"));
    }

    #[test]
    fn display_pads_to_minor_units() {
        assert_eq!(usd("5").to_string(), "5.00 USD");
    }

    proptest! {
        #[test]
        fn money_round_trips_through_json(cents in any::<i64>()) {
            let money = Money::new(Decimal::new(cents, 2), "USD".parse().unwrap()).unwrap();
            let json = serde_json::to_string(&money).unwrap();
            prop_assert_eq!(serde_json::from_str::<Money>(&json).unwrap(), money);
        }

        #[test]
        fn addition_then_subtraction_is_identity(a in -1_000_000_000i64..1_000_000_000, b in -1_000_000_000i64..1_000_000_000) {
            let x = Money::new(Decimal::new(a, 2), "EUR".parse().unwrap()).unwrap();
            let y = Money::new(Decimal::new(b, 2), "EUR".parse().unwrap()).unwrap();
            prop_assert_eq!(x.checked_add(y).unwrap().checked_sub(y).unwrap(), x);
        }
    }
}
