//! The bank-transaction producer: a deterministic simulator of card payments, bills, salaries,
//! incoming transfers and refunds on a set of accounts, as a bank API or ERP feed would report
//! them.

use chrono::{DateTime, SubsecRound, Utc};
use eventbus::{Currency, EventId, EventSchema, Topic};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use serde_json::{Map, Value};

/// The `event_type` of a recorded bank transaction.
pub const BANK_TRANSACTION_RECORDED: &str = "bank_transaction_recorded";
/// The `source` of the simulated bank feed.
pub const BANK_FEED_SOURCE: &str = "capera.bank-feed";

/// What a merchant sells. Credits use the extra categories `income` and `transfer`; a refund
/// keeps the category of the merchant that refunds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    /// Supermarkets and grocers.
    Groceries,
    /// Restaurants and cafés.
    Dining,
    /// Rides, fuel and public transport.
    Transport,
    /// Energy, phone and internet, paid as bills.
    Utilities,
    /// Flights and hotels.
    Travel,
    /// Streaming, music and cinema.
    Entertainment,
    /// Shops and online retail.
    Shopping,
    /// Pharmacies and dental care.
    Healthcare,
}

impl Category {
    /// Every category, in declaration order.
    pub const ALL: [Category; 8] = [
        Category::Groceries,
        Category::Dining,
        Category::Transport,
        Category::Utilities,
        Category::Travel,
        Category::Entertainment,
        Category::Shopping,
        Category::Healthcare,
    ];

    /// The name written in the `category` field of a transaction, such as `groceries`.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Groceries => "groceries",
            Category::Dining => "dining",
            Category::Transport => "transport",
            Category::Utilities => "utilities",
            Category::Travel => "travel",
            Category::Entertainment => "entertainment",
            Category::Shopping => "shopping",
            Category::Healthcare => "healthcare",
        }
    }

    /// How often a card payment falls in this category, out of 100. Utilities are paid as bills,
    /// never by card.
    fn card_weight(self) -> u32 {
        match self {
            Category::Groceries => 26,
            Category::Dining => 24,
            Category::Transport => 18,
            Category::Utilities => 0,
            Category::Travel => 3,
            Category::Entertainment => 8,
            Category::Shopping => 15,
            Category::Healthcare => 6,
        }
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A merchant with its category and the range of a typical payment, in cents of the account
/// currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Merchant {
    /// The name written in the `merchant` field and the description of a transaction.
    pub name: &'static str,
    /// What the merchant sells.
    pub category: Category,
    /// The smallest typical payment, in minor units (cents).
    pub min_cents: i64,
    /// The largest typical payment, in minor units (cents).
    pub max_cents: i64,
}

const fn merchant(name: &'static str, category: Category, min_cents: i64, max_cents: i64) -> Merchant {
    Merchant { name, category, min_cents, max_cents }
}

/// The merchants the simulator pays.
pub const MERCHANTS: &[Merchant] = &[
    merchant("Whole Foods Market", Category::Groceries, 1_500, 18_000),
    merchant("Trader Joe's", Category::Groceries, 1_200, 12_000),
    merchant("Kroger", Category::Groceries, 1_000, 16_000),
    merchant("Blue Bottle Coffee", Category::Dining, 450, 1_800),
    merchant("Chipotle", Category::Dining, 900, 3_500),
    merchant("Olive Garden", Category::Dining, 2_500, 12_000),
    merchant("Uber", Category::Transport, 800, 6_500),
    merchant("Shell", Category::Transport, 2_500, 9_000),
    merchant("Metro Transit", Category::Transport, 275, 3_000),
    merchant("Con Edison", Category::Utilities, 6_000, 24_000),
    merchant("Verizon Wireless", Category::Utilities, 4_500, 13_000),
    merchant("Comcast Xfinity", Category::Utilities, 5_000, 15_000),
    merchant("Delta Air Lines", Category::Travel, 12_000, 95_000),
    merchant("Marriott Hotels", Category::Travel, 15_000, 80_000),
    merchant("Airbnb", Category::Travel, 9_000, 120_000),
    merchant("Netflix", Category::Entertainment, 699, 2_299),
    merchant("AMC Theatres", Category::Entertainment, 1_200, 6_000),
    merchant("Spotify", Category::Entertainment, 1_099, 1_999),
    merchant("Amazon", Category::Shopping, 800, 35_000),
    merchant("Target", Category::Shopping, 1_000, 25_000),
    merchant("Best Buy", Category::Shopping, 2_500, 120_000),
    merchant("CVS Pharmacy", Category::Healthcare, 500, 8_000),
    merchant("City Dental Care", Category::Healthcare, 8_000, 45_000),
];

/// The employers that pay salaries.
const EMPLOYERS: &[&str] = &["Northwind Traders", "Contoso Ltd", "Globex Corporation", "Initech", "Umbrella Health"];

/// Net monthly pay of an account, in cents.
const SALARY_CENTS: (i64, i64) = (240_000, 820_000);
/// An incoming transfer, in cents.
const TRANSFER_IN_CENTS: (i64, i64) = (2_000, 80_000);

/// What happened on the account, with its weight out of 100: most events are card payments.
#[derive(Clone, Copy, Debug)]
enum Kind {
    CardPayment,
    BillPayment,
    Salary,
    TransferIn,
    Refund,
}

const KIND_WEIGHTS: &[(Kind, u32)] =
    &[(Kind::CardPayment, 80), (Kind::BillPayment, 8), (Kind::Salary, 2), (Kind::TransferIn, 5), (Kind::Refund, 5)];

#[derive(Clone, Debug)]
struct Account {
    id: String,
    employer: &'static str,
    salary_cents: i64,
    /// How active the account is, 1 to 5: busier accounts record more transactions.
    activity: u32,
}

/// A deterministic feed of bank transactions: the same seed gives the same events, ids included.
///
/// Events are `bank_transaction_recorded` on [`Topic::BankTransactions`], keyed by account id so
/// that each account keeps its order. Amounts are decimal strings in the account currency
/// (USD unless [`with_currency`](Self::with_currency) says otherwise).
#[derive(Clone, Debug)]
pub struct BankTransactionSimulator {
    seed: u64,
    rng: StdRng,
    accounts: Vec<Account>,
    total_activity: u32,
    currency: Currency,
    sequence: u64,
}

impl BankTransactionSimulator {
    /// The topic the events belong on.
    pub const TOPIC: Topic = Topic::BankTransactions;

    /// A feed over `accounts` accounts (`acc_0001`, `acc_0002`, ...; at least one) in USD.
    pub fn new(seed: u64, accounts: usize) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let accounts: Vec<Account> = (1..=accounts.max(1))
            .map(|n| Account {
                id: format!("acc_{n:04}"),
                employer: EMPLOYERS[rng.random_range(0..EMPLOYERS.len())],
                salary_cents: rng.random_range(SALARY_CENTS.0..=SALARY_CENTS.1),
                activity: rng.random_range(1..=5),
            })
            .collect();
        let total_activity = accounts.iter().map(|a| a.activity).sum();
        let currency = "USD".parse().expect("USD is an ISO 4217 currency");
        Self { seed, rng, accounts, total_activity, currency, sequence: 0 }
    }

    /// The same feed in another currency. The typical amounts are USD figures, used as they are
    /// and rounded to the currency's minor units.
    pub fn with_currency(mut self, currency: Currency) -> Self {
        self.currency = currency;
        self
    }

    /// The seed the feed was made with: the same seed gives the same events.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The currency of every account and amount.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The account ids, in order.
    pub fn account_ids(&self) -> impl Iterator<Item = &str> {
        self.accounts.iter().map(|a| a.id.as_str())
    }

    /// The next transaction, recorded at `at`: the partition key (the account id) and the event.
    pub fn next_event(&mut self, at: DateTime<Utc>) -> (String, EventSchema) {
        self.sequence += 1;
        let account = self.pick_account().clone();
        let (direction, cents, merchant, category, description) = match self.pick_kind() {
            Kind::CardPayment => {
                let m = self.pick_merchant(|m| m.category.card_weight());
                let cents = self.typical_amount(m.min_cents, m.max_cents);
                ("debit", cents, m.name, m.category.as_str(), format!("Card payment at {}", m.name))
            }
            Kind::BillPayment => {
                let m = self.pick_merchant(|m| u32::from(m.category == Category::Utilities));
                let cents = self.typical_amount(m.min_cents, m.max_cents);
                ("debit", cents, m.name, m.category.as_str(), format!("Bill payment to {}", m.name))
            }
            Kind::Salary => {
                // Net pay varies a little from month to month (overtime, deductions).
                let cents = account.salary_cents + self.rng.random_range(-5_000..=5_000);
                ("credit", cents, account.employer, "income", format!("Salary from {}", account.employer))
            }
            Kind::TransferIn => {
                let cents = self.typical_amount(TRANSFER_IN_CENTS.0, TRANSFER_IN_CENTS.1);
                ("credit", cents, "Zelle", "transfer", "Incoming transfer via Zelle".to_owned())
            }
            Kind::Refund => {
                let m = self.pick_merchant(|m| m.category.card_weight());
                let cents = self.typical_amount(m.min_cents, m.max_cents);
                ("credit", cents, m.name, m.category.as_str(), format!("Refund from {}", m.name))
            }
        };
        let amount = Decimal::new(cents, 2).round_dp(self.currency.minor_units());
        let mut amount = amount.max(Decimal::new(1, self.currency.minor_units()));
        amount.rescale(self.currency.minor_units());

        let mut data = Map::new();
        data.insert("account_id".into(), Value::from(account.id.as_str()));
        data.insert("direction".into(), Value::from(direction));
        data.insert("amount".into(), Value::from(amount.to_string()));
        data.insert("currency".into(), Value::from(self.currency.code()));
        data.insert("merchant".into(), Value::from(merchant));
        data.insert("category".into(), Value::from(category));
        data.insert("description".into(), Value::from(description));

        let entity_id = format!("txn_{}", self.sequence);
        let event = EventSchema {
            event_id: Some(EventId::derived(&format!("{BANK_FEED_SOURCE}/{}/{entity_id}", self.seed))),
            event_type: BANK_TRANSACTION_RECORDED.into(),
            timestamp: Some(at.trunc_subsecs(6)),
            source: Some(BANK_FEED_SOURCE.to_owned()),
            version: Some(eventbus::envelope::DEFAULT_VERSION.to_owned()),
            entity_type: "transaction".to_owned(),
            entity_id,
            data: data.into(),
            metadata: Map::new().into(),
        };
        (account.id, event)
    }

    fn pick_account(&mut self) -> &Account {
        let mut ticket = self.rng.random_range(0..self.total_activity);
        for account in &self.accounts {
            if ticket < account.activity {
                return account;
            }
            ticket -= account.activity;
        }
        &self.accounts[self.accounts.len() - 1]
    }

    fn pick_kind(&mut self) -> Kind {
        let total: u32 = KIND_WEIGHTS.iter().map(|(_, w)| w).sum();
        let mut ticket = self.rng.random_range(0..total);
        for &(kind, weight) in KIND_WEIGHTS {
            if ticket < weight {
                return kind;
            }
            ticket -= weight;
        }
        Kind::CardPayment
    }

    /// A merchant drawn with the given weight per merchant's category, shared evenly among the
    /// merchants of that category.
    fn pick_merchant(&mut self, weight: impl Fn(&Merchant) -> u32) -> Merchant {
        let per_category = |m: &Merchant| MERCHANTS.iter().filter(|o| o.category == m.category).count() as u32;
        // Scale by 6 (a multiple of every category's merchant count) to keep integer weights.
        let weights: Vec<u32> = MERCHANTS.iter().map(|m| weight(m) * 6 / per_category(m)).collect();
        let total: u32 = weights.iter().sum();
        let mut ticket = self.rng.random_range(0..total);
        for (m, &w) in MERCHANTS.iter().zip(&weights) {
            if ticket < w {
                return *m;
            }
            ticket -= w;
        }
        MERCHANTS[0]
    }

    /// An amount in `[min, max]` cents, skewed towards the low end as real spending is: the
    /// smaller of two uniform draws.
    fn typical_amount(&mut self, min: i64, max: i64) -> i64 {
        let a = self.rng.random_range(min..=max);
        let b = self.rng.random_range(min..=max);
        a.min(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};
    use eventbus::Money;

    fn start() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 6, 9, 0, 0).unwrap()
    }

    fn run(seed: u64, accounts: usize, n: usize) -> Vec<(String, EventSchema)> {
        let mut sim = BankTransactionSimulator::new(seed, accounts);
        (0..n).map(|i| sim.next_event(start() + Duration::minutes(i as i64))).collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_feed_and_another_seed_another() {
        // Given two simulators with the same seed and one with another seed
        // When each produces 500 events
        // Then the first two feeds are identical, ids included, and the third differs
        assert_eq!(run(7, 10, 500), run(7, 10, 500));
        assert_ne!(run(7, 10, 500), run(8, 10, 500));
    }

    #[test]
    fn every_event_is_a_valid_transaction_keyed_by_its_account() {
        // Given a feed over 25 accounts
        let events = run(42, 25, 2_000);
        let accounts: std::collections::HashSet<String> = (1..=25).map(|n| format!("acc_{n:04}")).collect();
        for (i, (key, event)) in events.iter().enumerate() {
            // Then each event is a complete bank_transaction_recorded
            assert_eq!(event.event_type.as_str(), BANK_TRANSACTION_RECORDED);
            assert_eq!(event.entity_type, "transaction");
            assert_eq!(event.entity_id, format!("txn_{}", i + 1));
            assert_eq!(event.source(), BANK_FEED_SOURCE);
            assert!(event.event_id.is_some() && event.timestamp.is_some());
            event.validate().unwrap();
            // And its key is its account, one of the simulated ones
            assert_eq!(event.data["account_id"], key.as_str());
            assert!(accounts.contains(key), "{key}");
            // And its amount is positive money with two decimals
            let amount = event.data["amount"].as_str().unwrap();
            let money = Money::parse(amount, event.data["currency"].as_str().unwrap()).unwrap();
            assert!(money.amount() > Decimal::ZERO);
            assert_eq!(money.amount().to_string(), amount);
            assert!(matches!(event.data["direction"].as_str(), Some("debit" | "credit")));
            for field in ["merchant", "category", "description"] {
                assert!(!event.data[field].as_str().unwrap().is_empty(), "{field}");
            }
        }
        // And event ids are unique
        let ids: std::collections::HashSet<_> = events.iter().map(|(_, e)| e.event_id.clone()).collect();
        assert_eq!(ids.len(), events.len());
    }

    #[test]
    fn the_mix_is_mostly_debits_with_salaries_transfers_and_refunds() {
        // Given a long feed
        let events = run(1, 50, 5_000);
        let count = |f: &dyn Fn(&EventSchema) -> bool| events.iter().filter(|(_, e)| f(e)).count();
        // Then debits dominate but credits are there, of every kind
        let debits = count(&|e| e.data["direction"] == "debit");
        let credits = count(&|e| e.data["direction"] == "credit");
        assert!(debits > credits * 4 && credits > 300, "{debits} debits, {credits} credits");
        for description in ["Salary from", "Incoming transfer", "Refund from", "Bill payment", "Card payment"] {
            assert!(count(&|e| e.data["description"].as_str().unwrap().starts_with(description)) > 0);
        }
        // And every merchant category occurs
        for category in Category::ALL {
            assert!(count(&|e| e.data["category"] == category.as_str()) > 0, "{category}");
        }
    }

    #[test]
    fn another_currency_is_used_for_every_amount() {
        let mut sim = BankTransactionSimulator::new(3, 5).with_currency("EUR".parse().unwrap());
        let (_, event) = sim.next_event(start());
        assert_eq!(event.data["currency"], "EUR");
        let mut yen = BankTransactionSimulator::new(3, 5).with_currency("JPY".parse().unwrap());
        for _ in 0..100 {
            let (_, event) = yen.next_event(start());
            Money::parse(event.data["amount"].as_str().unwrap(), "JPY").unwrap();
        }
    }

    #[test]
    fn zero_accounts_means_one() {
        let sim = BankTransactionSimulator::new(3, 0);
        assert_eq!(sim.account_ids().collect::<Vec<_>>(), ["acc_0001"]);
    }
}
