"""DUET analysis: pure metric code (ABX, CCA, probes, MI) and plotting helpers; no CLI here."""
