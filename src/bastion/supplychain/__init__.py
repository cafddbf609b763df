"""Supply-chain checks: code and notebook analysis (and, in later work, signing, BOM and
dependency audit). Each check returns TargetResults in the shared result model."""
