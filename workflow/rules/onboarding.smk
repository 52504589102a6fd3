# Vehicle onboarding: the trained detector recalibrated to each unseen vehicle's attack-free
# captures (declared per test split in config/datasets.yaml), beside the zero-shot stages.


rule onboarding:
    input:
        unpack(stage_inputs("onboarding")),
    output:
        **stage_outputs("onboarding"),
    log:
        stage_log("onboarding"),
    benchmark:
        stage_benchmark("onboarding")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("onboarding"),
    script:
        "../scripts/stage.py"
