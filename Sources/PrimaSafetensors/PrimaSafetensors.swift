// PrimaSafetensors: see Formats/prima-checkpoint.md.
