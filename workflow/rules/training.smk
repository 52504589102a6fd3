# The three chained training stages; inputs, outputs and paths come from canids.shape.
# Resources come from the profile; threads are what torch is given.


rule autoencoder:
    input:
        unpack(stage_inputs("autoencoder")),
        teacher=teacher_of("autoencoder"),
    output:
        **stage_outputs("autoencoder"),
    log:
        stage_log("autoencoder"),
    benchmark:
        stage_benchmark("autoencoder")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("autoencoder"),
        settings=settings_of("autoencoder"),
        resume_dir=resume_dir("autoencoder"),
    script:
        "../scripts/stage.py"


rule curriculum:
    input:
        unpack(stage_inputs("curriculum")),
        teacher=teacher_of("curriculum"),
    output:
        **stage_outputs("curriculum"),
    log:
        stage_log("curriculum"),
    benchmark:
        stage_benchmark("curriculum")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("curriculum"),
        settings=settings_of("curriculum"),
        resume_dir=resume_dir("curriculum"),
    script:
        "../scripts/stage.py"


rule fusion:
    input:
        unpack(stage_inputs("fusion")),
        teacher=teacher_of("fusion"),
    output:
        **stage_outputs("fusion"),
    log:
        stage_log("fusion"),
    benchmark:
        stage_benchmark("fusion")
    conda:
        "../envs/canids.yaml"
    threads: 2
    params:
        code=stage_code_digest("fusion"),
        settings=settings_of("fusion"),
        resume_dir=resume_dir("fusion"),
    script:
        "../scripts/stage.py"
