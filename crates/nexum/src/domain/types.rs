//! The small vocabularies of the domain, written in `snake_case` on the wire.

use std::fmt;
use std::str::FromStr;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

macro_rules! vocabulary {
    ($($(#[$doc:meta])* $name:ident { $($(#[$variant_doc:meta])* $variant:ident = $text:literal),* $(,)? })*) => {$(
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $($(#[$variant_doc])* #[serde(rename = $text)] $variant,)*
        }

        impl $name {
            /// Every value, in the order declared.
            pub const ALL: &'static [$name] = &[$($name::$variant,)*];

            /// The name written on the wire and in commands, e.g. `tier_1`.
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
    KycStatus {
        /// Not checked yet: every customer starts here, held to the limit of tier 1.
        Pending = "pending",
        /// Checked and confirmed: the customer's tier sets their limit.
        Verified = "verified",
        /// Checked and refused: the customer may not transact.
        Rejected = "rejected",
    }

    /// How much a customer may move: set by the depth of the identity check.
    KycTier {
        /// The basic check: transactions up to 2,000 in their currency.
        Tier1 = "tier_1",
        /// A fuller check: transactions up to 50,000.
        Tier2 = "tier_2",
        /// The fullest check: transactions up to 1,000,000.
        Tier3 = "tier_3",
    }

    /// The kind of account.
    AccountType {
        /// An everyday account, which may have an overdraft.
        Checking = "checking",
        /// A savings account, which may never go below zero.
        Savings = "savings",
        /// A loan's own account, opened by loan origination: its balance is minus the principal
        /// outstanding, and only loan operations move it.
        Loan = "loan",
        /// A credit-card account: it spends below zero down to its credit limit, gets monthly
        /// statements, and is paid from another account.
        Credit = "credit",
    }

    /// Whether an account may move money.
    AccountStatus {
        /// Open: money moves in and out.
        Active = "active",
        /// Frozen by the bank: no money moves until it is unfrozen.
        Frozen = "frozen",
        /// Closed at a zero balance: it never changes again.
        Closed = "closed",
    }

    /// What an `account_updated` event changed.
    AccountChange {
        /// The name or the limit.
        Updated = "updated",
        /// The account was frozen.
        Frozen = "frozen",
        /// The account was unfrozen.
        Unfrozen = "unfrozen",
        /// The account was closed.
        Closed = "closed",
    }

    /// The kind of money movement.
    TransactionType {
        /// Money into an account from outside the bank.
        Deposit = "deposit",
        /// Money out of an account, out of the bank.
        Withdrawal = "withdrawal",
        /// Money from one account of the bank to another.
        Transfer = "transfer",
        /// A loan's principal, from its loan account into the customer's account.
        LoanDisbursement = "loan_disbursement",
        /// A loan repayment from the customer's account: principal to the loan account, interest
        /// to the bank's interest income.
        LoanPayment = "loan_payment",
        /// A payment to a credit account from another account of its owner.
        CreditPayment = "credit_payment",
    }

    /// Why a transaction was recorded as failed.
    FailureReason {
        /// The paying account's balance would drop below minus its overdraft limit.
        InsufficientFunds = "insufficient_funds",
        /// An account of the transaction is frozen.
        AccountFrozen = "account_frozen",
        /// An account of the transaction is closed.
        AccountClosed = "account_closed",
        /// The amount is not in an account's currency.
        CurrencyMismatch = "currency_mismatch",
        /// The amount exceeds the limit of the paying customer's KYC status and tier.
        KycLimitExceeded = "kyc_limit_exceeded",
    }

    /// How often a loan is repaid.
    PaymentFrequency {
        /// Every month.
        Monthly = "monthly",
        /// Every three months.
        Quarterly = "quarterly",
        /// Every six months.
        SemiAnnually = "semi_annually",
        /// Every twelve months.
        Annually = "annually",
    }

    /// Why a collections case was opened.
    CaseReason {
        /// An installment is past due.
        PaymentOverdue = "payment_overdue",
        /// The loan defaulted.
        LoanDefaulted = "loan_defaulted",
    }
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

    /// Payments in a year: 12 for monthly, 1 for annually.
    pub fn periods_per_year(self) -> u32 {
        12 / self.months()
    }
}
