//! Permissions and permission sets, with each permission's pinned bit: the bits are stored
//! in every user, session and API token record, so they never move.

use std::fmt;

/// The 14 permission names of the vendor's `UsercommonPermissionName`, in its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    ReadAdmin,
    ReadBilling,
    ReadInvite,
    ReadMedia,
    ReadProfile,
    ReadStatistics,
    ReadSubUser,
    ReadUser,
    WriteAdmin,
    WriteBilling,
    WriteInvite,
    WriteMedia,
    WriteSubUser,
    WriteUser,
}

impl Permission {
    pub const ALL: [Permission; 14] = [
        Permission::ReadAdmin,
        Permission::ReadBilling,
        Permission::ReadInvite,
        Permission::ReadMedia,
        Permission::ReadProfile,
        Permission::ReadStatistics,
        Permission::ReadSubUser,
        Permission::ReadUser,
        Permission::WriteAdmin,
        Permission::WriteBilling,
        Permission::WriteInvite,
        Permission::WriteMedia,
        Permission::WriteSubUser,
        Permission::WriteUser,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::ReadAdmin => "read:admin",
            Permission::ReadBilling => "read:billing",
            Permission::ReadInvite => "read:invite",
            Permission::ReadMedia => "read:media",
            Permission::ReadProfile => "read:profile",
            Permission::ReadStatistics => "read:statistics",
            Permission::ReadSubUser => "read:sub-user",
            Permission::ReadUser => "read:user",
            Permission::WriteAdmin => "write:admin",
            Permission::WriteBilling => "write:billing",
            Permission::WriteInvite => "write:invite",
            Permission::WriteMedia => "write:media",
            Permission::WriteSubUser => "write:sub-user",
            Permission::WriteUser => "write:user",
        }
    }

    pub fn from_name(name: &str) -> Option<Permission> {
        Permission::ALL
            .into_iter()
            .find(|permission| permission.name() == name)
    }

    /// The permission's bit in a `PermissionSet`. Every stored user, session and API token
    /// holds its sets as these bits, so the values are pinned: never reorder or reuse them,
    /// only append a new permission with the next free bit.
    const fn bit(self) -> u16 {
        match self {
            Permission::ReadAdmin => 1 << 0,
            Permission::ReadBilling => 1 << 1,
            Permission::ReadInvite => 1 << 2,
            Permission::ReadMedia => 1 << 3,
            Permission::ReadProfile => 1 << 4,
            Permission::ReadStatistics => 1 << 5,
            Permission::ReadSubUser => 1 << 6,
            Permission::ReadUser => 1 << 7,
            Permission::WriteAdmin => 1 << 8,
            Permission::WriteBilling => 1 << 9,
            Permission::WriteInvite => 1 << 10,
            Permission::WriteMedia => 1 << 11,
            Permission::WriteSubUser => 1 << 12,
            Permission::WriteUser => 1 << 13,
        }
    }
}

/// A set of permissions as a bit set: the hot path intersects these on every request.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PermissionSet(u16);

impl PermissionSet {
    pub fn empty() -> PermissionSet {
        PermissionSet(0)
    }

    pub fn all() -> PermissionSet {
        Permission::ALL
            .into_iter()
            .fold(PermissionSet::empty(), PermissionSet::with)
    }

    pub fn from_bits(bits: u16) -> PermissionSet {
        PermissionSet(bits & PermissionSet::all().0)
    }

    pub fn bits(self) -> u16 {
        self.0
    }

    pub fn with(self, permission: Permission) -> PermissionSet {
        PermissionSet(self.0 | permission.bit())
    }

    pub fn without(self, permission: Permission) -> PermissionSet {
        PermissionSet(self.0 & !permission.bit())
    }

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    pub fn intersection(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & other.0)
    }

    pub fn union(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 | other.0)
    }

    pub fn difference(self, other: PermissionSet) -> PermissionSet {
        PermissionSet(self.0 & !other.0)
    }

    /// The first permission of `self` that `limit` lacks, in the vendor's order.
    pub fn first_outside(self, limit: PermissionSet) -> Option<Permission> {
        self.iter().find(|permission| !limit.contains(*permission))
    }

    /// Members in the vendor's (alphabetical) order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL
            .into_iter()
            .filter(move |permission| self.contains(*permission))
    }

    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Permission::name).collect()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> PermissionSet {
        iter.into_iter()
            .fold(PermissionSet::empty(), PermissionSet::with)
    }
}

impl fmt::Debug for PermissionSet {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.debug_set().entries(self.names()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The on-disk meaning of every bit: a change here would give stored users, sessions and
    /// tokens other permissions than they were granted.
    #[test]
    fn every_permission_keeps_its_stored_bit() {
        let pinned = [
            (Permission::ReadAdmin, 0x0001),
            (Permission::ReadBilling, 0x0002),
            (Permission::ReadInvite, 0x0004),
            (Permission::ReadMedia, 0x0008),
            (Permission::ReadProfile, 0x0010),
            (Permission::ReadStatistics, 0x0020),
            (Permission::ReadSubUser, 0x0040),
            (Permission::ReadUser, 0x0080),
            (Permission::WriteAdmin, 0x0100),
            (Permission::WriteBilling, 0x0200),
            (Permission::WriteInvite, 0x0400),
            (Permission::WriteMedia, 0x0800),
            (Permission::WriteSubUser, 0x1000),
            (Permission::WriteUser, 0x2000),
        ];
        assert_eq!(pinned.len(), Permission::ALL.len());
        for (permission, bit) in pinned {
            assert_eq!(permission.bit(), bit, "{}", permission.name());
            assert_eq!(PermissionSet::empty().with(permission).bits(), bit);
            assert_eq!(
                PermissionSet::from_bits(bit).iter().collect::<Vec<_>>(),
                vec![permission]
            );
        }
        assert_eq!(PermissionSet::all().bits(), 0x3fff);
    }
}
