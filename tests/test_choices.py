"""tfvae.choices: the TensorFlow-free names are the names the library modules map."""

from tfvae import choices, export, layers, networks, plots, scaling, schedules


def test_the_names_are_those_of_the_library():
    assert tuple(layers.LIKELIHOODS) == choices.LIKELIHOODS
    assert tuple(schedules.SCHEDULES) == choices.SCHEDULES
    assert networks.NETWORKS == choices.NETWORKS
    assert networks.POSTERIORS == choices.POSTERIORS
    assert plots.PLOTS == choices.PLOTS
    assert scaling.STRATEGIES == choices.STRATEGIES and scaling.PRECISIONS == choices.PRECISIONS
    assert export.SIGNATURES == choices.SIGNATURES
    assert export.QUANTIZATIONS == (None, *choices.QUANTIZATIONS)
    from tfvae import data

    assert data.BINARIZATIONS == (None, *choices.BINARIZATIONS)
