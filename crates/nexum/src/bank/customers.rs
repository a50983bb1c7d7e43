//! Customers: creation, updates and KYC changes.

use super::{Bank, BankError, Ctx, MAX_ATTEMPTS, Work, retrying};
use eventbus::Currency;

use crate::domain::{AccountType, Customer, KycStatus, KycTier};
use crate::events::{CustomerDetails, KycStatusChanged, NexumEvent, Payload};
use crate::ids::{AccountId, CustomerId};

/// A new customer. KYC starts `pending` at `tier_1`.
#[derive(Clone, Debug, Default)]
pub struct NewCustomer {
    /// The id to use; a fresh one if `None`.
    pub id: Option<CustomerId>,
    /// The given name, 1 to 100 printable characters once trimmed.
    pub first_name: String,
    /// The family name, 1 to 100 printable characters once trimmed.
    pub last_name: String,
    /// An e-mail address such as `jane@example.com`.
    pub email: String,
    /// A phone number in E.164 form, such as `+1234567890`; none if `None`.
    pub phone: Option<String>,
}

/// The fields to change; `None` keeps a field as it is.
#[derive(Clone, Debug, Default)]
pub struct CustomerUpdate {
    /// The new given name, 1 to 100 printable characters.
    pub first_name: Option<String>,
    /// The new family name, 1 to 100 printable characters.
    pub last_name: Option<String>,
    /// The new e-mail address.
    pub email: Option<String>,
    /// The new phone number in E.164 form.
    pub phone: Option<String>,
}

/// A name: 1 to 100 printable characters, trimmed.
pub fn name(field: &'static str, value: &str) -> Result<String, BankError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > 100 || value.chars().any(char::is_control) {
        return Err(BankError::invalid(field, "expected 1 to 100 printable characters"));
    }
    Ok(value.to_owned())
}

/// An e-mail address such as `jane@example.com`, trimmed.
pub fn email(value: &str) -> Result<String, BankError> {
    let value = value.trim();
    let valid = value.len() <= 254
        && value.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.')
        })
        && !value.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(BankError::invalid("email", "expected an address such as jane@example.com"));
    }
    Ok(value.to_owned())
}

/// A phone number in E.164 form, such as `+1234567890`.
pub fn phone(value: &str) -> Result<String, BankError> {
    let value = value.trim();
    let digits = value.strip_prefix('+').unwrap_or(value);
    if !(4..=15).contains(&digits.len()) || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(BankError::invalid("phone", "expected E.164, such as +1234567890"));
    }
    Ok(value.to_owned())
}

impl Bank {
    /// Onboards a customer, KYC `pending` at `tier_1`. Refused if the id exists or a field is
    /// malformed.
    pub async fn create_customer(&self, ctx: &Ctx, new: NewCustomer) -> Result<Customer, BankError> {
        let details = CustomerDetails {
            first_name: name("first_name", &new.first_name)?,
            last_name: name("last_name", &new.last_name)?,
            email: email(&new.email)?,
            phone: new.phone.as_deref().map(phone).transpose()?,
            kyc_status: KycStatus::Pending,
            kyc_tier: KycTier::Tier1,
        };
        let id = new.id.unwrap_or_default();
        let event = NexumEvent::new(&id, Payload::CustomerCreated(details));
        retrying!({
            if self.customer(&id).await?.is_some() {
                return Err(BankError::AlreadyExists { kind: "customer", id: id.to_string() });
            }
            let mut work = Work::new(ctx, "create_customer");
            let customer = work.create::<Customer>(id.as_str(), &event, &mut [])?;
            Ok(self.commit(work).await?.then(|| self.customers.keep(customer)))
        })
    }

    /// Changes a customer's contact details; the event carries the customer as they are after the
    /// change. Refused if nothing is to change.
    pub async fn update_customer(
        &self,
        ctx: &Ctx,
        id: &CustomerId,
        update: CustomerUpdate,
    ) -> Result<Customer, BankError> {
        if update.first_name.is_none() && update.last_name.is_none() && update.email.is_none() && update.phone.is_none()
        {
            return Err(BankError::invalid("update", "nothing to change"));
        }
        retrying!({
            let mut work = Work::new(ctx, "update_customer");
            let mut customer = self.customer_for(&mut work, id).await?;
            let mut details = customer.state.details.clone();
            if let Some(value) = &update.first_name {
                details.first_name = name("first_name", value)?;
            }
            if let Some(value) = &update.last_name {
                details.last_name = name("last_name", value)?;
            }
            if let Some(value) = &update.email {
                details.email = email(value)?;
            }
            if let Some(value) = &update.phone {
                details.phone = Some(phone(value)?);
            }
            work.record_in(&NexumEvent::new(id, Payload::CustomerUpdated(details)), &mut customer)?;
            Ok(self.commit(work).await?.then(|| self.customers.keep(customer)))
        })
    }

    /// Sets the KYC status and tier; refused if neither changes.
    pub async fn change_kyc(
        &self,
        ctx: &Ctx,
        id: &CustomerId,
        status: KycStatus,
        tier: KycTier,
    ) -> Result<Customer, BankError> {
        retrying!({
            let mut work = Work::new(ctx, "change_kyc");
            let mut customer = self.customer_for(&mut work, id).await?;
            let (old_status, old_tier) = (customer.state.kyc_status(), customer.state.kyc_tier());
            if (old_status, old_tier) == (status, tier) {
                return Err(BankError::InvalidState(format!("customer `{id}` is already {status} at {tier}")));
            }
            let change = KycStatusChanged { old_status, new_status: status, old_tier, new_tier: tier };
            work.record_in(&NexumEvent::new(id, Payload::KycStatusChanged(change)), &mut customer)?;
            Ok(self.commit(work).await?.then(|| self.customers.keep(customer)))
        })
    }

    /// Where a loan of `customer_id` in `currency` is paid out when no account is named: the
    /// customer's oldest checking or savings account in that currency.
    pub async fn payout_account(&self, customer_id: &CustomerId, currency: Currency) -> Result<AccountId, BankError> {
        let customer =
            self.customer(customer_id).await?.ok_or_else(|| BankError::UnknownCustomer(customer_id.clone()))?;
        customer
            .accounts
            .iter()
            .find(|account| {
                matches!(account.account_type, AccountType::Checking | AccountType::Savings) && account.currency == currency
            })
            .map(|account| account.id.clone())
            .ok_or_else(|| {
                BankError::invalid(
                    "account_id",
                    format!("customer `{customer_id}` has no checking or savings account in {currency}: open one, or name the account"),
                )
            })
    }
}
