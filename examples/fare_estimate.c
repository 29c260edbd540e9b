/* fare_estimate: estimates a ride's fare through dispatch's C ABI.
 *
 * Build (from the repository root, after `cargo build -p dispatch-ffi`):
 *   cc -Wall -Wextra -std=c11 -I ffi/include examples/fare_estimate.c \
 *      target/debug/libdispatch_ffi.a -lpthread -ldl -lm -o fare_estimate
 *
 * Prints the estimate as JSON and as plain numbers (`key=value`, one a line, which the
 * test ffi/tests/c_example.rs compares with the Rust estimator), with and without stops
 * on the way, then shows an error path
 * (malformed JSON: a status and the last error's message) and the engine handle. Every
 * string the library hands out is freed; the program exits non-zero on any surprise. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dispatch.h"

/* One category of API.md's example zone (Cairo, EGP), with a 20 % coupon capped at
 * 10.00 EGP and a surge of x1.25. */
static const char *CONFIG =
    "{\"pricing\": {\"base_minor\": 1500, \"per_km_minor\": 450, \"per_min_minor\": 75,"
    "               \"minimum_minor\": 2500, \"booking_fee_minor\": 300, \"cancel_fee_minor\": 1000,"
    "               \"wait_per_min_minor\": 50, \"free_wait_s\": 180, \"commission_bps\": 1500},"
    " \"currency\": \"EGP\", \"extra_fee_minor\": 200, \"surge_bps\": 12500,"
    " \"coupon\": {\"percent_bps\": 2000, \"max_discount_minor\": 1000},"
    " \"route\": {\"detour_factor\": 1.3, \"city_speed_kmh\": 30}}";

static const double PICKUP_LAT = 30.0444, PICKUP_LNG = 31.2357;
static const double DROPOFF_LAT = 30.0600, DROPOFF_LNG = 31.2500;

static int failures = 0;

static void expect_status(const char *what, DispatchStatus got, DispatchStatus want) {
    if (got != want) {
        const char *message = dispatch_last_error_message();
        fprintf(stderr, "%s: status %d, expected %d (%s)\n", what, (int)got, (int)want,
                message ? message : "no message");
        failures++;
    }
}

/* An amount in minor units shown in major units: the currency's exponent says where the
 * decimal point goes (6704 is "67.04 EGP", "6704 JPY", "6.704 KWD"). Integers only. */
static void print_amount(long long minor, unsigned exponent, const char *currency) {
    unsigned long long scale = 1;
    for (unsigned i = 0; i < exponent; i++) {
        scale *= 10;
    }
    unsigned long long magnitude =
        minor < 0 ? 0ULL - (unsigned long long)minor : (unsigned long long)minor;
    if (exponent == 0) {
        printf("%s%llu %s", minor < 0 ? "-" : "", magnitude, currency);
    } else {
        printf("%s%llu.%0*llu %s", minor < 0 ? "-" : "", magnitude / scale, (int)exponent,
               magnitude % scale, currency);
    }
}

static void print_values(const char *label, const DispatchFareEstimate *e) {
    printf("%s.fare_minor=%lld\n", label, (long long)e->fare_minor);
    printf("%s.currency=%s\n", label, e->currency);
    printf("%s.currency_exponent=%u\n", label, (unsigned)e->currency_exponent);
    printf("%s.fare_shown=", label);
    print_amount((long long)e->fare_minor, e->currency_exponent, e->currency);
    printf("\n");
    printf("%s.distance_m=%llu\n", label, (unsigned long long)e->distance_m);
    printf("%s.duration_s=%llu\n", label, (unsigned long long)e->duration_s);
    printf("%s.surge_bps=%u\n", label, (unsigned)e->surge_bps);
    printf("%s.route_source=%s\n", label,
           e->route_source == DISPATCH_ROUTE_SOURCE_ROUTER ? "router" : "straight_line");
    printf("%s.discount_minor=%lld\n", label, (long long)e->discount_minor);
    printf("%s.base_minor=%lld\n", label, (long long)e->base_minor);
    printf("%s.distance_minor=%lld\n", label, (long long)e->distance_minor);
    printf("%s.time_minor=%lld\n", label, (long long)e->time_minor);
    printf("%s.surge_minor=%lld\n", label, (long long)e->surge_minor);
    printf("%s.minimum_fill_minor=%lld\n", label, (long long)e->minimum_fill_minor);
    printf("%s.booking_fee_minor=%lld\n", label, (long long)e->booking_fee_minor);
    printf("%s.extra_fee_minor=%lld\n", label, (long long)e->extra_fee_minor);
}

int main(void) {
    /* 1. The straight-line estimate, as JSON. */
    char *json = NULL;
    DispatchStatus status = dispatch_fare_estimate(CONFIG, PICKUP_LAT, PICKUP_LNG, DROPOFF_LAT,
                                                   DROPOFF_LNG, NULL, &json);
    expect_status("straight-line estimate", status, DISPATCH_STATUS_OK);
    printf("straight_line.json=%s\n", json ? json : "(null)");
    dispatch_string_free(json);

    /* 2. The same, as plain numbers. */
    DispatchFareEstimate values;
    memset(&values, 0, sizeof values);
    status = dispatch_fare_estimate_values(CONFIG, PICKUP_LAT, PICKUP_LNG, DROPOFF_LAT, DROPOFF_LNG,
                                           NULL, &values);
    expect_status("straight-line values", status, DISPATCH_STATUS_OK);
    print_values("straight_line", &values);

    /* 3. With a road router's route (API.md's example ride: 8230 m, 960 s). */
    DispatchRoute route = {8230, 960};
    json = NULL;
    status = dispatch_fare_estimate(CONFIG, PICKUP_LAT, PICKUP_LNG, DROPOFF_LAT, DROPOFF_LNG,
                                    &route, &json);
    expect_status("router estimate", status, DISPATCH_STATUS_OK);
    printf("router.json=%s\n", json ? json : "(null)");
    dispatch_string_free(json);
    memset(&values, 0, sizeof values);
    status = dispatch_fare_estimate_values(CONFIG, PICKUP_LAT, PICKUP_LNG, DROPOFF_LAT, DROPOFF_LNG,
                                           &route, &values);
    expect_status("router values", status, DISPATCH_STATUS_OK);
    print_values("router", &values);

    /* 3b. A ride with two stops on the way: the straight line leg by leg, summed (as the
     *     server prices it); then four stops, one too many: a status and no answer. */
    const DispatchPoint stops[2] = {{30.0512, 31.2401}, {30.0555, 31.2288}};
    json = NULL;
    status = dispatch_fare_estimate_stops(CONFIG, PICKUP_LAT, PICKUP_LNG, stops, 2, DROPOFF_LAT,
                                          DROPOFF_LNG, NULL, &json);
    expect_status("estimate with stops", status, DISPATCH_STATUS_OK);
    printf("stops.json=%s\n", json ? json : "(null)");
    dispatch_string_free(json);
    memset(&values, 0, sizeof values);
    status = dispatch_fare_estimate_stops_values(CONFIG, PICKUP_LAT, PICKUP_LNG, stops, 2,
                                                 DROPOFF_LAT, DROPOFF_LNG, NULL, &values);
    expect_status("values with stops", status, DISPATCH_STATUS_OK);
    print_values("stops", &values);
    const DispatchPoint four[4] = {stops[0], stops[1], stops[0], stops[1]};
    json = NULL;
    status = dispatch_fare_estimate_stops(CONFIG, PICKUP_LAT, PICKUP_LNG, four, 4, DROPOFF_LAT,
                                          DROPOFF_LNG, NULL, &json);
    expect_status("four stops", status, DISPATCH_STATUS_INVALID_ARGUMENT);
    printf("four_stops.status=%d\n", (int)status);
    printf("four_stops.answer_is_null=%d\n", json == NULL);

    /* 4. An error path: malformed JSON is a status and a message, and no answer. */
    json = NULL;
    status = dispatch_fare_estimate("{\"pricing\": ", PICKUP_LAT, PICKUP_LNG, DROPOFF_LAT,
                                    DROPOFF_LNG, NULL, &json);
    expect_status("malformed JSON", status, DISPATCH_STATUS_INVALID_JSON);
    const char *message = dispatch_last_error_message(); /* borrowed: not freed */
    printf("bad_json.status=%d\n", (int)status);
    printf("bad_json.answer_is_null=%d\n", json == NULL);
    printf("bad_json.error=%s\n", message ? message : "(null)");

    /* 5. An engine in memory: create a rider, read it back, refuse an unknown trip. */
    DispatchEngine *engine = NULL;
    status = dispatch_engine_open(NULL, NULL, &engine);
    expect_status("engine open", status, DISPATCH_STATUS_OK);
    char *answer = NULL;
    status = dispatch_engine_submit(engine, "\"Admin\"",
                                    "{\"CreateUser\": {\"id\": null, \"role\": \"rider\", \"name\": \"Amal\","
                                    " \"phone\": \"+201000000002\", \"vehicle\": null}}",
                                    &answer);
    expect_status("engine submit", status, DISPATCH_STATUS_OK);
    printf("engine.create_user=%s\n", answer ? answer : "(null)");
    dispatch_string_free(answer);
    answer = NULL;
    status = dispatch_engine_query(engine, "{\"trip\": \"trp_0000000000000001\"}", &answer);
    expect_status("engine query of an unknown trip", status, DISPATCH_STATUS_ENGINE_ERROR);
    printf("engine.unknown_trip=%s\n", answer ? answer : "(null)");
    dispatch_string_free(answer);
    status = dispatch_engine_close(engine);
    expect_status("engine close", status, DISPATCH_STATUS_OK);

    printf("failures=%d\n", failures);
    return failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
