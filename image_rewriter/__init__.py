"""Host tool that bakes the cvmchain agent into CVM images and predicts its measurements."""
