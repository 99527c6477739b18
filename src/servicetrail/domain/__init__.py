"""Pure domain: values, the SRV catalogue and the visibility rule. No I/O, no frameworks."""
