"""Electronic licences (电子证照库, issue 5): types, issue, lifecycle, status lists, consent, fetch.

Domain (no gRPC, no SQL): ``identifier`` (GB/T 36904 identifiers, ISO 7064
MOD 37,36 check character), ``holder`` (GB 11643 / GB 32100 holder codes),
``types`` (the nine licence types and their fields), ``matters`` (what
licences are fetched for; consent or legal basis), ``model`` (licences,
events, consents, uses), ``vault`` (the :class:`~licence_vault.vault.Vault`:
issue, amend, suspend, resume, revoke, consent, fetch, holder's view),
``status_list`` (IETF Token Status Lists), ``verify`` (licence verification),
``importer`` (legacy CSV import), ``signer`` (the
:class:`~licence_vault.signer.LicenceSigner` interface and a development
deployment), ``store`` (the storage interface).

Adapters: ``sql`` + ``models`` (SQLite / PostgreSQL store, migration
``0004``), ``deployment_signer`` (the ``signing.deployment`` facade: seals,
sealed PDFs), ``service`` + ``wire`` (``zhida.licence.v1.LicenceVaultService``),
``offline`` (verification with cached trust material and status lists).
"""
