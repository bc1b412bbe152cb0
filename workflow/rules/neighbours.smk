rule neighbours:
    input:
        matrix=reduced_matrix,
        cosine=cosine_checked(lambda wc: paths.parse_neighbours(wc.neighbours)["metric"]),
    output:
        graph=NEIGHBOURS,
    log:
        log_path("neighbours", "pooling", "reducer", "neighbours"),
    conda:
        "../../environment.yml"
    # Both the UMAP layout and HDBSCAN wait for it: all the cores it can get.
    threads: 2
    resources:
        # float64 copy of the matrix, the K-NN lists and brute-force blocks of 256 rows.
        mem_mb=lambda wc, input: 2048 + 20 * int(input.size_mb),
        runtime=lambda wc, input: 20 + int(input.size_mb / 5),
    params:
        graph=lambda wildcards: paths.parse_neighbours(wildcards.neighbours),
    script:
        "../../scripts/neighbours.py"
