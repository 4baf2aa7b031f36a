"""Electronic licences: types, issue, lifecycle, consent, fetch, status (issue 5)."""
