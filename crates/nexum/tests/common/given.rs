//! Given events for domain tests: the facts a test starts from, as the bank records them (a
//! customer is created pending at tier 1, then their KYC changes; a deposit is posted with its
//! journal entry). Ids are fixed names, so the `when` can name them.
#![allow(dead_code)]

use nexum::domain::{AccountStatus, AccountType, KycStatus, KycTier, TransactionType};
use nexum::events::{
    AccountCreated, CustomerDetails, KycStatusChanged, NexumEvent, Payload, Posting, TransactionPosted,
};
use nexum::ids::{AccountId, CustomerId, JournalEntryId, TransactionId};
use rust_decimal::Decimal;

/// The customer of the fixtures.
pub const JANE: &str = "cust_jane";
/// Jane's checking account.
pub const CHECKING: &str = "acc_checking";
/// Jane's savings account, when a test gives her one.
pub const SAVINGS: &str = "acc_savings";

pub fn acc(id: &str) -> AccountId {
    id.parse().unwrap()
}

pub fn cust(id: &str) -> CustomerId {
    id.parse().unwrap()
}

/// Customer `id`, Jane Smith, whose KYC is `status` at `tier`: created pending at tier 1, then
/// changed unless that is what is asked.
pub fn customer(id: &str, status: KycStatus, tier: KycTier) -> Vec<NexumEvent> {
    let details = CustomerDetails {
        first_name: "Jane".into(),
        last_name: "Smith".into(),
        email: "jane@example.com".into(),
        phone: Some("+1234567890".into()),
        kyc_status: KycStatus::Pending,
        kyc_tier: KycTier::Tier1,
    };
    let mut events = vec![NexumEvent::new(id, Payload::CustomerCreated(details))];
    if (status, tier) != (KycStatus::Pending, KycTier::Tier1) {
        let change = KycStatusChanged {
            old_status: KycStatus::Pending,
            new_status: status,
            old_tier: KycTier::Tier1,
            new_tier: tier,
        };
        events.push(NexumEvent::new(id, Payload::KycStatusChanged(change)));
    }
    events
}

/// Account `id` of `customer` in USD, active, with an overdraft (or credit) limit of `overdraft`.
pub fn account(id: &str, customer: &str, account_type: AccountType, overdraft: Option<&str>) -> NexumEvent {
    let created = AccountCreated {
        customer_id: cust(customer),
        account_type,
        currency: "USD".parse().unwrap(),
        name: None,
        status: AccountStatus::Active,
        overdraft_limit: overdraft.map_or(Decimal::ZERO, |limit| limit.parse().unwrap()),
    };
    NexumEvent::new(id, Payload::AccountCreated(created))
}

/// The first deposit into `account`: `amount` in USD from the bank's cash, posted.
pub fn opening_deposit(account: &str, amount: &str) -> NexumEvent {
    let amount: Decimal = amount.parse().unwrap();
    let posted = TransactionPosted {
        transaction_type: TransactionType::Deposit,
        amount,
        currency: "USD".parse().unwrap(),
        from_account_id: None,
        to_account_id: Some(acc(account)),
        final_balance: amount,
        journal_entry_id: JournalEntryId::new(),
        postings: vec![
            Posting { account_id: AccountId::cash(), amount: -amount },
            Posting { account_id: acc(account), amount },
        ],
    };
    NexumEvent::new(TransactionId::new(), Payload::TransactionPosted(posted))
}

/// Jane, verified at tier 2, with her checking account holding `balance` (`"0"`: no deposit).
pub fn funded(balance: &str) -> Vec<NexumEvent> {
    let mut events = customer(JANE, KycStatus::Verified, KycTier::Tier2);
    events.push(account(CHECKING, JANE, AccountType::Checking, None));
    if balance != "0" {
        events.push(opening_deposit(CHECKING, balance));
    }
    events
}
