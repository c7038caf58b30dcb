"""What users do with aligned videos (issue 16): align two videos (:mod:`lrprop.alignment.align`),
from a model a user names (:mod:`lrprop.alignment.models`), with what ``lrprop align`` writes
(:mod:`lrprop.alignment.outputs`); videos are read as streams (:mod:`lrprop.alignment.videos`)."""
