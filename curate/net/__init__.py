"""The network half of downloads: which URLs may be fetched (:mod:`curate.net.urls`,
:mod:`curate.net.policy`), when to try again (:mod:`curate.net.backoff`) and the HTTP client
with hard deadlines and a memory budget (:mod:`curate.net.fetch`)."""
