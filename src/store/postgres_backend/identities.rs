//! Store functions for OAuth identities on PostgreSQL, as `redb_backend/identities.rs`: which
//! user a provider's account (provider, subject) signs in as, and a user's linked identities.
//! Linking (to an existing account or a new one) is one write transaction with the checks
//! that must hold at that moment. The identity's row refers to its user, so a linked
//! identity always has one (`users::delete_users` removes a user's identities first).

use deadpool_postgres::GenericClient;

use crate::model::{NewUser, OAuthIdentity, UnixSeconds, User, UserId};
use crate::store::postgres_backend::rows::{
    USER_COLUMNS, qualified, user_from_row, user_id_from_sql, user_id_to_sql,
};
use crate::store::postgres_backend::users::{insert_user, read_user};
use crate::store::postgres_backend::{PostgresStore, begin_write};
use crate::store::{IdentityLink, StoreError};

impl PostgresStore {
    /// The user this identity signs in as; `None` when it is not linked.
    pub async fn user_of_identity(
        &self,
        provider: &str,
        subject: &str,
    ) -> Result<Option<User>, StoreError> {
        let client = self.connection().await?;
        linked_user(&client, provider, subject).await
    }

    /// The user's linked identities, in (provider, subject) order.
    pub async fn identities_of_user(
        &self,
        user_id: UserId,
    ) -> Result<Vec<OAuthIdentity>, StoreError> {
        let client = self.connection().await?;
        identities_of_user_in(&client, user_id).await
    }

    /// Links (provider, subject) to the existing user `user_id`, if `may_link` still accepts
    /// that user inside this transaction. The user itself is not changed.
    pub async fn link_identity(
        &self,
        provider: &str,
        subject: &str,
        user_id: UserId,
        may_link: impl FnOnce(&User) -> bool + Send,
        now: UnixSeconds,
    ) -> Result<IdentityLink, StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if let Some(user) = linked_user(&transaction, provider, subject).await? {
            return Ok(IdentityLink::AlreadyLinked(user));
        }
        let Some(user) = read_user(&transaction, user_id).await? else {
            return Ok(IdentityLink::Refused);
        };
        if !may_link(&user) {
            return Ok(IdentityLink::Refused);
        }
        insert_identity(&transaction, provider, subject, user.id, now).await?;
        transaction.commit().await?;
        Ok(IdentityLink::Linked(user))
    }

    /// Creates a user and links (provider, subject) to it, in one transaction. If the
    /// identity got linked meanwhile, nothing is created and its user is answered instead.
    /// `EmailTaken` if the address is in use.
    pub async fn create_user_with_identity(
        &self,
        provider: &str,
        subject: &str,
        new_user: NewUser,
        now: UnixSeconds,
    ) -> Result<(User, bool), StoreError> {
        let mut client = self.connection().await?;
        let transaction = begin_write(&mut client).await?;
        if let Some(user) = linked_user(&transaction, provider, subject).await? {
            return Ok((user, false));
        }
        let user = insert_user(&transaction, new_user, now).await?;
        insert_identity(&transaction, provider, subject, user.id, now).await?;
        transaction.commit().await?;
        Ok((user, true))
    }
}

/// The user's linked identities, in (provider, subject) order (also read by a sign-in's
/// write, for its answer).
/// `identities_of_user_in`'s statement; ordered by the strings' bytes, as the redb
/// backend's index keys are.
pub(super) const IDENTITIES_OF_USER: &str = "SELECT provider, subject, user_id, linked \
    FROM oauth_identities WHERE user_id = $1 \
    ORDER BY provider COLLATE \"C\", subject COLLATE \"C\"";

pub(super) async fn identities_of_user_in(
    client: &impl GenericClient,
    user_id: UserId,
) -> Result<Vec<OAuthIdentity>, StoreError> {
    let statement = client.prepare_cached(IDENTITIES_OF_USER).await?;
    client
        .query(&statement, &[&user_id_to_sql(user_id)?])
        .await?
        .iter()
        .map(|row| {
            Ok(OAuthIdentity {
                provider: row.try_get(0)?,
                subject: row.try_get(1)?,
                user_id: user_id_from_sql(row.try_get(2)?)?,
                linked: row.try_get(3)?,
            })
        })
        .collect()
}

/// The user an identity is linked to.
async fn linked_user(
    client: &impl GenericClient,
    provider: &str,
    subject: &str,
) -> Result<Option<User>, StoreError> {
    let statement = client
        .prepare_cached(&format!(
            "SELECT {} FROM oauth_identities identity \
             JOIN users u ON u.id = identity.user_id \
             WHERE identity.provider = $1 AND identity.subject = $2",
            qualified("u", USER_COLUMNS)
        ))
        .await?;
    client
        .query_opt(&statement, &[&provider, &subject])
        .await?
        .map(|row| user_from_row(&row, 0))
        .transpose()
}

/// Links (provider, subject) to `user_id`. Callers have checked that it is not linked to a
/// user; a row left for another would be taken over, as the redb backend overwrites it.
async fn insert_identity(
    client: &impl GenericClient,
    provider: &str,
    subject: &str,
    user_id: UserId,
    now: UnixSeconds,
) -> Result<(), StoreError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO oauth_identities (provider, subject, user_id, linked) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (provider, subject) DO UPDATE SET user_id = $3, linked = $4",
        )
        .await?;
    client
        .execute(
            &statement,
            &[&provider, &subject, &user_id_to_sql(user_id)?, &now],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::email_address::EmailAddress;
    use crate::model::{PermissionSet, Role, Status};
    use crate::store::postgres_backend::test_support::{NOW, add_user, assert_same, fresh_store};

    fn new_user(email: &str) -> NewUser {
        NewUser {
            permissions: PermissionSet::empty(),
            email_verified: true,
            ..NewUser::new(
                EmailAddress::parse(email).unwrap(),
                Role::User,
                Status::Active,
            )
        }
    }

    #[tokio::test]
    async fn an_identity_links_once_and_is_listed_in_provider_and_subject_order() {
        let store = fresh_store().await;
        let ada = add_user(&store, "ada@example.com").await;
        assert!(
            store
                .user_of_identity("github", "1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.identities_of_user(ada.id).await.unwrap().is_empty());

        let linked = store
            .link_identity("github", "1", ada.id, |_| true, NOW)
            .await
            .unwrap();
        assert!(matches!(&linked, IdentityLink::Linked(user) if user.id == ada.id));
        assert_same(
            &store.user_of_identity("github", "1").await.unwrap(),
            &Some(ada.clone()),
        );

        // Linked already: to whichever user, the link stands.
        let other = add_user(&store, "other@example.com").await;
        let again = store
            .link_identity("github", "1", other.id, |_| true, NOW + 5)
            .await
            .unwrap();
        assert!(matches!(&again, IdentityLink::AlreadyLinked(user) if user.id == ada.id));

        store
            .link_identity("google", "z", ada.id, |_| true, NOW + 1)
            .await
            .unwrap();
        store
            .link_identity("Google", "a", ada.id, |_| true, NOW + 2)
            .await
            .unwrap();
        store
            .link_identity("github", "0", ada.id, |_| true, NOW + 3)
            .await
            .unwrap();
        let identities = store.identities_of_user(ada.id).await.unwrap();
        let keys: Vec<(&str, &str, UnixSeconds)> = identities
            .iter()
            .map(|identity| {
                assert_eq!(identity.user_id, ada.id);
                (
                    identity.provider.as_str(),
                    identity.subject.as_str(),
                    identity.linked,
                )
            })
            .collect();
        assert_eq!(
            keys,
            vec![
                ("Google", "a", NOW + 2),
                ("github", "0", NOW + 3),
                ("github", "1", NOW),
                ("google", "z", NOW + 1),
            ]
        );
        assert!(store.identities_of_user(other.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_link_is_refused_for_a_missing_user_or_one_that_may_link_turns_down() {
        let store = fresh_store().await;
        let ada = add_user(&store, "ada@example.com").await;
        let refused = store
            .link_identity(
                "github",
                "1",
                ada.id,
                |user| user.status == Status::Pending,
                NOW,
            )
            .await
            .unwrap();
        assert!(matches!(refused, IdentityLink::Refused));
        let missing = store
            .link_identity("github", "1", ada.id + 100, |_| true, NOW)
            .await
            .unwrap();
        assert!(matches!(missing, IdentityLink::Refused));
        assert!(
            store
                .user_of_identity("github", "1")
                .await
                .unwrap()
                .is_none()
        );
        assert!(store.identities_of_user(ada.id).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_user_made_with_an_identity_is_made_once_and_a_taken_address_makes_nothing() {
        let store = fresh_store().await;
        let (made, created) = store
            .create_user_with_identity("github", "7", new_user("new@example.com"), NOW)
            .await
            .unwrap();
        assert!(created);
        assert_eq!(made.normalized_email, "new@example.com");
        assert_eq!(made.created, NOW);
        assert_same(
            &store.user_of_identity("github", "7").await.unwrap(),
            &Some(made.clone()),
        );
        // The identity was linked meanwhile: its user, and nothing made.
        let (same, created) = store
            .create_user_with_identity("github", "7", new_user("second@example.com"), NOW)
            .await
            .unwrap();
        assert!(!created);
        assert_eq!(same.id, made.id);
        assert!(
            store
                .user_by_normalized_email("second@example.com")
                .await
                .unwrap()
                .is_none()
        );
        // An address in use: nothing linked.
        let taken = store
            .create_user_with_identity("github", "8", new_user("new@example.com"), NOW)
            .await;
        assert!(matches!(taken, Err(StoreError::EmailTaken)));
        assert!(
            store
                .user_of_identity("github", "8")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(store.all_users().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn a_deleted_user_takes_its_identities_along() {
        let store = fresh_store().await;
        let (made, _) = store
            .create_user_with_identity("github", "7", new_user("new@example.com"), NOW)
            .await
            .unwrap();
        assert!(store.delete_user_tree(made.id).await.unwrap());
        assert!(
            store
                .user_of_identity("github", "7")
                .await
                .unwrap()
                .is_none()
        );
        // Free again for a new account.
        let (again, created) = store
            .create_user_with_identity("github", "7", new_user("new@example.com"), NOW)
            .await
            .unwrap();
        assert!(created);
        assert_ne!(again.id, made.id);
    }
}
