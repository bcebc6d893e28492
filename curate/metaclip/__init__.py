"""MetaCLIP (Xu et al. 2023, "Demystifying CLIP Data"): metadata files, sub-string matching and
the data card of a balanced run. The stages are ``curate.stages.metaclip`` (``metaclip_match``)
and ``curate.stages.metaclip_balance`` (``metaclip_balance``)."""
