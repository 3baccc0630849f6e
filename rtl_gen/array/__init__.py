"""The array unit: operand fetch, the R x C MAC array, drain, the epilogue (bias, requantisation,
PWL activation, residual), the softmax unit, and the MATMUL and ATTENTION sequencers."""
