//! The small vocabularies of the domain, written in `snake_case` on the wire.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($($(#[$doc:meta])* $name:ident { $($variant:ident = $text:literal),* $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(#[serde(rename = $text)] $variant,)*
        }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)*
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            /// The wire name; the error lists the names allowed.
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or_else(|| {
                    let allowed: Vec<_> = Self::ALL.iter().map(|v| v.as_str()).collect();
                    format!("`{s}` is not one of {}", allowed.join(", "))
                })
            }
        }
    )*};
}

vocabulary! {
    /// Where a customer's identity check stands.
    KycStatus { Pending = "pending", Verified = "verified", Rejected = "rejected" }

    /// How much a customer may move: set by the depth of the identity check.
    KycTier { Tier1 = "tier_1", Tier2 = "tier_2", Tier3 = "tier_3" }

    AccountType { Checking = "checking", Savings = "savings", Loan = "loan", Credit = "credit" }

    AccountStatus { Active = "active", Frozen = "frozen", Closed = "closed" }

    /// What an `account_updated` event changed.
    AccountChange { Updated = "updated", Frozen = "frozen", Unfrozen = "unfrozen", Closed = "closed" }

    TransactionType {
        Deposit = "deposit",
        Withdrawal = "withdrawal",
        Transfer = "transfer",
        LoanDisbursement = "loan_disbursement",
        LoanPayment = "loan_payment",
        CreditPayment = "credit_payment",
    }

    /// Why a transaction was recorded as failed.
    FailureReason {
        InsufficientFunds = "insufficient_funds",
        AccountFrozen = "account_frozen",
        AccountClosed = "account_closed",
        CurrencyMismatch = "currency_mismatch",
        KycLimitExceeded = "kyc_limit_exceeded",
    }

    PaymentFrequency { Monthly = "monthly", Quarterly = "quarterly", SemiAnnually = "semi_annually", Annually = "annually" }

    /// Why a collections case was opened.
    CaseReason { PaymentOverdue = "payment_overdue", LoanDefaulted = "loan_defaulted" }
}

impl KycTier {
    /// The largest single transaction a customer of this tier may make, in units of the
    /// transaction's currency.
    pub fn transaction_limit(self) -> Decimal {
        match self {
            Self::Tier1 => Decimal::from(2_000),
            Self::Tier2 => Decimal::from(50_000),
            Self::Tier3 => Decimal::from(1_000_000),
        }
    }
}

impl KycStatus {
    /// The limit that applies to a customer with this status and tier: a customer still pending
    /// is held to tier 1, a rejected customer may not transact.
    pub fn transaction_limit(self, tier: KycTier) -> Decimal {
        match self {
            Self::Verified => tier.transaction_limit(),
            Self::Pending => KycTier::Tier1.transaction_limit().min(tier.transaction_limit()),
            Self::Rejected => Decimal::ZERO,
        }
    }
}

impl AccountType {
    /// Whether customers move money in and out of it directly. A loan account moves only by
    /// disbursements and payments.
    pub fn is_transactional(self) -> bool {
        !matches!(self, Self::Loan)
    }
}

impl FailureReason {
    /// The message of a failed transaction.
    pub fn message(self) -> &'static str {
        match self {
            Self::InsufficientFunds => "insufficient funds",
            Self::AccountFrozen => "account is frozen",
            Self::AccountClosed => "account is closed",
            Self::CurrencyMismatch => "currency does not match the account's currency",
            Self::KycLimitExceeded => "amount exceeds the customer's KYC tier limit",
        }
    }
}

impl PaymentFrequency {
    /// Months between two payments.
    pub fn months(self) -> u32 {
        match self {
            Self::Monthly => 1,
            Self::Quarterly => 3,
            Self::SemiAnnually => 6,
            Self::Annually => 12,
        }
    }

    pub fn periods_per_year(self) -> u32 {
        12 / self.months()
    }
}
