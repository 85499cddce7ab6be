"""The plan -> BRAINSFit parameter mapping (pure; the BRAINSFit binary is not needed)."""

from __future__ import annotations

import dataclasses

import pytest
import SimpleITK as sitk
from MultimodalKneeRegistrationLib.engines.brainsfit_parameters import (
    BRAINSFIT_ITERATION_CAP,
    BRAINSFIT_PARAMETER_NAMES,
    DATA_PARAMETERS,
    MAXIMUM_STEP_LENGTH,
    MINIMUM_STEP_LENGTH,
    RELAXATION_FACTOR,
    TRANSLATION_SCALE,
    brainsfit_parameters,
)
from MultimodalKneeRegistrationLib.errors import InputError
from MultimodalKneeRegistrationLib.settings import settings_for_preset
from MultimodalKneeRegistrationLib.steps.planning import plan_registration

#: Every ``<name>`` of BRAINSFit.xml (BRAINSTools, as shipped with Slicer 5.x), the names
#: ``slicer.cli.run(slicer.modules.brainsfit, None, parameters)`` accepts.
BRAINSFIT_XML_NAMES = {
    "fixedVolume",
    "movingVolume",
    "samplingPercentage",
    "splineGridSize",
    "linearTransform",
    "bsplineTransform",
    "outputVolume",
    "initialTransform",
    "initializeTransformMode",
    "useRigid",
    "useScaleVersor3D",
    "useScaleSkewVersor3D",
    "useAffine",
    "useBSpline",
    "useSyN",
    "useComposite",
    "maskProcessingMode",
    "fixedBinaryVolume",
    "movingBinaryVolume",
    "outputFixedVolumeROI",
    "outputMovingVolumeROI",
    "useROIBSpline",
    "histogramMatch",
    "medianFilterSize",
    "removeIntensityOutliers",
    "fixedVolume2",
    "movingVolume2",
    "outputVolumePixelType",
    "backgroundFillValue",
    "scaleOutputValues",
    "interpolationMode",
    "numberOfIterations",
    "maximumStepLength",
    "minimumStepLength",
    "relaxationFactor",
    "translationScale",
    "reproportionScale",
    "skewScale",
    "maxBSplineDisplacement",
    "fixedVolumeTimeIndex",
    "movingVolumeTimeIndex",
    "numberOfHistogramBins",
    "numberOfMatchPoints",
    "costMetric",
    "maskInferiorCutOffFromCenter",
    "ROIAutoDilateSize",
    "ROIAutoClosingSize",
    "numberOfSamples",
    "strippedOutputTransform",
    "transformType",
    "outputTransform",
    "initializeRegistrationByCurrentGenericTransform",
    "failureExitCode",
    "writeTransformOnFailure",
    "numberOfThreads",
    "debugLevel",
    "costFunctionConvergenceFactor",
    "projectedGradientTolerance",
    "maximumNumberOfEvaluations",
    "maximumNumberOfCorrections",
    "UseDebugImageViewer",
    "PromptAfterImageSend",
    "metricSamplingStrategy",
    "logFileReport",
    "writeOutputTransformInFloat",
}


def _grid(size, spacing):
    image = sitk.Image(list(size), sitk.sitkInt16)
    image.SetSpacing(spacing)
    return image


@pytest.fixture
def microct_mri_plan():
    """micro-CT (0.05 mm, small field of view) fixed, MRI (0.5 x 0.5 x 2 mm, large) moving."""
    settings = settings_for_preset("mri-microct-knee")
    plan = plan_registration(
        _grid((400, 400, 400), (0.05, 0.05, 0.05)), _grid((320, 320, 60), (0.5, 0.5, 2.0)), settings
    )
    return plan, settings


def test_every_key_is_a_brainsfit_xml_parameter(microct_mri_plan):
    plan, settings = microct_mri_plan
    assert BRAINSFIT_PARAMETER_NAMES <= BRAINSFIT_XML_NAMES
    params = brainsfit_parameters(plan, fixed_voxel_count=10**6)
    assert set(params) | set(DATA_PARAMETERS) <= BRAINSFIT_PARAMETER_NAMES
    assert not set(params) & set(DATA_PARAMETERS)  # the runner names the data: node IDs or paths


def test_our_start_turns_brainsfit_initialisation_off(microct_mri_plan):
    plan, settings = microct_mri_plan
    assert brainsfit_parameters(plan)["initializeTransformMode"] == "Off"


def test_search_mode_needs_our_initial_transform_and_brainsfit_modes_pass_through(microct_mri_plan):
    plan, settings = microct_mri_plan
    assert plan.initialize_transform_mode == "search"
    with pytest.raises(InputError, match="runs before BRAINSFit"):
        brainsfit_parameters(plan, from_initial_transform=False)
    moments = dataclasses.replace(plan, initialize_transform_mode="useMomentsAlign")
    params = brainsfit_parameters(moments, from_initial_transform=False)
    assert params["initializeTransformMode"] == "useMomentsAlign"


def test_sampling_fraction_gives_the_plans_number_of_samples(microct_mri_plan):
    plan, settings = microct_mri_plan
    fixedVoxels = 1_234_567
    params = brainsfit_parameters(plan, fixed_voxel_count=fixedVoxels)
    assert params["samplingPercentage"] == pytest.approx(plan.metric_samples / fixedVoxels, abs=1e-6)
    assert params["samplingPercentage"] * fixedVoxels == pytest.approx(plan.metric_samples, rel=1e-4)
    assert params["samplingPercentage"] > 0.002 * 10  # far above BRAINSFit's default that failed
    tiny = brainsfit_parameters(plan, fixed_voxel_count=1000)
    assert tiny["samplingPercentage"] == 1.0
    plain = brainsfit_parameters(plan)
    assert plain["samplingPercentage"] == pytest.approx(plan.sampling_percentage, abs=1e-6)
    with pytest.raises(InputError, match="no voxels"):
        brainsfit_parameters(plan, fixed_voxel_count=0)


def test_optimizer_values_are_on_brainsfits_own_scales(microct_mri_plan):
    """BRAINSFit's step lengths are unitless steps over scaled versor/translation parameters
    (BRAINSCommonLib/genericRegistrationHelper.hxx): its defaults, never the SimpleITK engine's mm."""
    plan, settings = microct_mri_plan
    params = brainsfit_parameters(plan)
    assert (params["maximumStepLength"], params["minimumStepLength"], params["relaxationFactor"]) == (
        MAXIMUM_STEP_LENGTH, MINIMUM_STEP_LENGTH, RELAXATION_FACTOR) == (0.05, 0.001, 0.5)
    assert params["maximumStepLength"] != plan.optimizer.max_step_mm
    assert params["numberOfIterations"] == BRAINSFIT_ITERATION_CAP
    more = dataclasses.replace(plan, optimizer=dataclasses.replace(plan.optimizer, number_of_iterations=15000))
    assert brainsfit_parameters(more)["numberOfIterations"] == 15000
    assert params["numberOfHistogramBins"] == plan.number_of_histogram_bins
    assert params["translationScale"] == TRANSLATION_SCALE
    assert params["costMetric"] == "MMI" and params["histogramMatch"] is False
    assert params["numberOfThreads"] == 1  # deterministic: BRAINSFit's threaded Mattes sums vary
    threads = settings.replace(number_of_threads=3, deterministic=False)
    threaded = dataclasses.replace(plan, execution=threads.execution)
    assert brainsfit_parameters(threaded)["numberOfThreads"] == 3
    anyThreads = dataclasses.replace(plan, execution=settings.replace(deterministic=False).execution)
    assert brainsfit_parameters(anyThreads)["numberOfThreads"] == -1


@pytest.mark.parametrize(
    "stages, flags",
    [
        (("Rigid",), (True, False, False)),
        (("Rigid", "Affine"), (True, False, True)),
        (("Rigid", "ScaleVersor3D", "Affine"), (True, True, True)),
    ],
)
def test_stages_switch_on_brainsfit_phases(microct_mri_plan, stages, flags):
    plan, settings = microct_mri_plan
    stagesPlan = dataclasses.replace(plan, optimizer=dataclasses.replace(plan.optimizer, transform_stages=stages))
    params = brainsfit_parameters(stagesPlan)
    assert (params["useRigid"], params["useScaleVersor3D"], params["useAffine"]) == flags


def test_unusable_requests_are_input_errors(microct_mri_plan):
    plan, settings = microct_mri_plan
    with pytest.raises(InputError, match="cannot be run by BRAINSFit"):
        bspline = dataclasses.replace(plan.optimizer, transform_stages=("Rigid", "BSpline"))
        brainsfit_parameters(dataclasses.replace(plan, optimizer=bspline))
