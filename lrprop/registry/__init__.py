"""What the store holds and where: the layout of a store's folders (:mod:`~lrprop.registry.layout`,
the one place a ``runs/…``, ``tune/…``, ``embeddings/…``, ``backbones/…`` or ``aliases/…`` path
is spelled), the versioned registries of pretrained backbones and published embeddings, their
aliases, each run's record of what it published, the training fingerprints that let a run skip
an unchanged class, and the audit of every version's files.

Below the trainer, which reads pretrained weights through :func:`~lrprop.registry.backbones.read_weights`,
and above :mod:`lrprop.store`, which knows URIs and immutable versions but not what they hold.
Nothing here trains, evaluates or talks to Ray or Prefect."""
